package web

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/evident-dev/evident/server/period"
)

// periodQuery is a parsed /period request. From and To are whole UTC days;
// To is inclusive (to=2026-03-31 covers March 31), so the report's half-open
// period ends at the following midnight.
type periodQuery struct {
	FromDay, ToDay string
	Seed           int64
	opt            period.Options
	CSVURL         string // export links
	JSONURL        string
}

const maxPeriodDays = 1100

func (s *Server) parsePeriod(q url.Values) (periodQuery, error) {
	now := s.now().UTC()
	today := now.Truncate(24 * time.Hour)
	p := periodQuery{FromDay: q.Get("from"), ToDay: q.Get("to"), Seed: 1}
	if p.ToDay == "" {
		p.ToDay = today.Format(time.DateOnly)
	}
	if p.FromDay == "" {
		p.FromDay = today.AddDate(0, 0, -29).Format(time.DateOnly)
	}
	if len(p.FromDay) > 10 || len(p.ToDay) > 10 {
		return p, errors.New("from and to must be dates like 2026-01-31")
	}
	from, err1 := time.Parse(time.DateOnly, p.FromDay)
	to, err2 := time.Parse(time.DateOnly, p.ToDay)
	if err1 != nil || err2 != nil {
		return p, errors.New("from and to must be dates like 2026-01-31")
	}
	if seed := q.Get("seed"); seed != "" {
		n, err := strconv.ParseInt(seed, 10, 64)
		if err != nil || len(seed) > 20 {
			return p, errors.New("seed must be a whole number")
		}
		p.Seed = n
	}
	to = to.AddDate(0, 0, 1)
	switch {
	case !from.Before(to):
		return p, errors.New("from must not be after to")
	case to.Sub(from) > maxPeriodDays*24*time.Hour:
		return p, fmt.Errorf("a period may span at most %d days", maxPeriodDays)
	case from.Year() < 2000 || from.After(now):
		return p, errors.New("from must be between 2000-01-01 and today")
	}
	p.opt = period.Options{From: from, To: to, Now: now, Seed: p.Seed}
	query := url.Values{"from": {p.FromDay}, "to": {p.ToDay}, "seed": {strconv.FormatInt(p.Seed, 10)}}.Encode()
	p.CSVURL, p.JSONURL = "/period.csv?"+query, "/period.json?"+query
	return p, nil
}

type periodView struct {
	Q          periodQuery
	Report     *period.Report
	Error      string
	Exceptions int
	Shown      []period.Exception
	MoreHidden int
}

const maxExceptionsShown = 500

func (s *Server) buildPeriod(r *http.Request) (periodQuery, *period.Report, int, error) {
	q, err := s.parsePeriod(r.URL.Query())
	if err != nil {
		return q, nil, http.StatusBadRequest, err
	}
	opt := q.opt
	opt.PatchSLA = period.DefaultPatchSLA
	rep, err := period.Build(r.Context(), s.st, s.policy, opt)
	if errors.Is(err, period.ErrBadPeriod) {
		return q, nil, http.StatusBadRequest, err
	}
	if err != nil {
		s.log.Error("web: period report failed", "err", err)
		return q, nil, http.StatusInternalServerError, fmt.Errorf("the period report could not be built: %w", err)
	}
	return q, rep, http.StatusOK, nil
}

func (s *Server) periodPage(w http.ResponseWriter, r *http.Request, u *user) {
	q, rep, code, err := s.buildPeriod(r)
	v := periodView{Q: q, Report: rep}
	if err != nil {
		v.Error = err.Error()
	}
	if rep != nil {
		for _, c := range rep.Controls {
			v.Exceptions += len(c.Exceptions)
			for _, e := range c.Exceptions {
				if len(v.Shown) < maxExceptionsShown {
					v.Shown = append(v.Shown, e)
				}
			}
		}
		v.MoreHidden = v.Exceptions - len(v.Shown)
	}
	s.render(w, r, code, "period.html", u, "Period report", v)
}

func (s *Server) periodCSV(w http.ResponseWriter, r *http.Request, u *user) {
	s.periodExport(w, r, u, "csv")
}

func (s *Server) periodJSON(w http.ResponseWriter, r *http.Request, u *user) {
	s.periodExport(w, r, u, "json")
}

func (s *Server) periodExport(w http.ResponseWriter, r *http.Request, u *user, format string) {
	q, rep, code, err := s.buildPeriod(r)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	var buf bytes.Buffer
	ctype := "text/csv; charset=utf-8"
	if format == "json" {
		ctype = "application/json"
		err = period.WriteJSON(&buf, rep)
	} else {
		err = period.WriteCSV(&buf, rep)
	}
	if err != nil {
		s.log.Error("web: period export failed", "format", format, "err", err)
		http.Error(w, "the export failed", http.StatusInternalServerError)
		return
	}
	s.audit(r.Context(), u.actor(), "export.period", fmt.Sprintf("format=%s from=%s to=%s seed=%d", format, q.FromDay, q.ToDay, q.Seed))
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="evident-period-%s-%s.%s"`, q.FromDay, q.ToDay, format))
	w.Write(buf.Bytes())
}
