package web

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/evident-dev/evident/internal/safetext"
	"github.com/evident-dev/evident/server/store"
)

// auditPageSize is how many entries one page of the audit log shows.
const auditPageSize = 100

// maxAuditExport bounds one export of the audit log; an export that
// reaches it says so (and how to narrow it) instead of ending silently.
const maxAuditExport = 100_000

// auditFilter is the audit page's query: what the form sends back.
type auditFilter struct {
	Action, Actor string
	FromDay       string // YYYY-MM-DD, inclusive
	ToDay         string // YYYY-MM-DD, inclusive
	Before        int64
	q             store.AuditQuery
}

// parseAuditFilter reads the filter from the query string; a malformed one
// is an error the page shows.
func parseAuditFilter(v url.Values) (auditFilter, error) {
	f := auditFilter{Action: v.Get("action"), Actor: v.Get("actor"), FromDay: v.Get("from"), ToDay: v.Get("to")}
	if len(f.Action) > 128 || len(f.Actor) > 256 {
		return f, errors.New("the action filter is limited to 128 bytes and the actor filter to 256")
	}
	f.q = store.AuditQuery{Action: f.Action, Actor: f.Actor}
	// Stored times are nanoseconds since 1970 in an int64: dates outside
	// 1970-2261 would wrap.
	day := func(name, v string) (time.Time, error) {
		d, err := time.Parse(time.DateOnly, v)
		if err != nil || d.Year() < 1970 || d.Year() > 2261 {
			return time.Time{}, fmt.Errorf("%s %q: want a date, YYYY-MM-DD, from 1970 to 2261", name, v)
		}
		return d, nil
	}
	if f.FromDay != "" {
		d, err := day("from", f.FromDay)
		if err != nil {
			return f, err
		}
		f.q.From = d
	}
	if f.ToDay != "" {
		d, err := day("to", f.ToDay)
		if err != nil {
			return f, err
		}
		f.q.To = d.AddDate(0, 0, 1)
	}
	if !f.q.From.IsZero() && !f.q.To.IsZero() && !f.q.From.Before(f.q.To) {
		return f, fmt.Errorf("from %s is after to %s", f.FromDay, f.ToDay)
	}
	if b := v.Get("before"); b != "" {
		id, err := strconv.ParseInt(b, 10, 64)
		if err != nil || id <= 0 {
			return f, fmt.Errorf("before %q: want an entry id", b)
		}
		f.Before, f.q.BeforeID = id, id
	}
	return f, nil
}

// query is the filter as a query string, with extra parameters set.
func (f auditFilter) query(extra ...string) string {
	v := url.Values{}
	for k, s := range map[string]string{"action": f.Action, "actor": f.Actor, "from": f.FromDay, "to": f.ToDay} {
		if s != "" {
			v.Set(k, s)
		}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

type auditView struct {
	Filter  auditFilter
	Entries []store.AuditEntry
	Error   string
	// Older links the next page; Newest links the first one (when paged).
	Older, Newest string
	CSVURL        string
	JSONURL       string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, u *user) {
	f, err := parseAuditFilter(r.URL.Query())
	v := auditView{Filter: f}
	if err != nil {
		v.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, "audit.html", u, "Audit log", v)
		return
	}
	q := f.q
	q.Limit = auditPageSize + 1
	log, err := s.st.AuditQuery(r.Context(), q)
	if err != nil {
		s.internalError(w, r, u, "reading the audit log failed", err)
		return
	}
	if len(log) > auditPageSize {
		log = log[:auditPageSize]
		v.Older = "/audit" + f.query("before", strconv.FormatInt(log[len(log)-1].ID, 10))
	}
	if f.Before > 0 {
		v.Newest = "/audit" + f.query()
	}
	v.Entries = log
	v.CSVURL, v.JSONURL = "/audit.csv"+f.query(), "/audit.json"+f.query()
	s.render(w, r, http.StatusOK, "audit.html", u, "Audit log", v)
}

func (s *Server) auditCSV(w http.ResponseWriter, r *http.Request, u *user) {
	s.auditExport(w, r, u, "csv")
}

func (s *Server) auditJSON(w http.ResponseWriter, r *http.Request, u *user) {
	s.auditExport(w, r, u, "json")
}

// auditEntryJSON is one exported entry.
type auditEntryJSON struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Detail string    `json:"detail"`
}

// auditExport writes every entry the filter selects (paging ignored), up
// to maxAuditExport, newest first; the export itself is audited.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, u *user, format string) {
	f, err := parseAuditFilter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := f.q
	q.BeforeID = 0
	// One entry more than the bound tells a cut export from one of
	// exactly maxAuditExport entries.
	var all []store.AuditEntry
	for len(all) <= maxAuditExport {
		q.Limit = min(store.MaxAuditPage, maxAuditExport+1-len(all))
		page, err := s.st.AuditQuery(r.Context(), q)
		if err != nil {
			s.log.Error("web: audit export failed", "err", err)
			http.Error(w, "reading the audit log failed", http.StatusInternalServerError)
			return
		}
		all = append(all, page...)
		if len(page) < q.Limit {
			break
		}
		q.BeforeID = page[len(page)-1].ID
	}
	truncated := len(all) > maxAuditExport
	if truncated {
		all = all[:maxAuditExport]
	}
	var buf bytes.Buffer
	ctype := "text/csv; charset=utf-8"
	switch format {
	case "json":
		ctype = "application/json"
		out := struct {
			Filter    map[string]string `json:"filter"`
			Entries   []auditEntryJSON  `json:"entries"`
			Truncated bool              `json:"truncated"`
			Note      string            `json:"note,omitempty"`
		}{Filter: map[string]string{"action": f.Action, "actor": f.Actor, "from": f.FromDay, "to": f.ToDay}, Entries: []auditEntryJSON{}, Truncated: truncated}
		if truncated {
			out.Note = fmt.Sprintf("only the newest %d entries: narrow the dates to export the rest", maxAuditExport)
		}
		for _, e := range all {
			out.Entries = append(out.Entries, auditEntryJSON{e.ID, e.Time.UTC(), e.Actor, e.Action, e.Detail})
		}
		enc := json.NewEncoder(safetext.JSONWriter(&buf))
		enc.SetIndent("", "  ")
		err = enc.Encode(out)
	default:
		cw := csv.NewWriter(&buf)
		cw.Write([]string{"id", "time", "actor", "action", "detail"})
		for _, e := range all {
			cw.Write(safetext.CSVRow([]string{strconv.FormatInt(e.ID, 10), e.Time.UTC().Format(time.RFC3339Nano), e.Actor, e.Action, e.Detail}))
		}
		if truncated {
			cw.Write([]string{"", "", "", "", fmt.Sprintf("only the newest %d entries: narrow the dates to export the rest", maxAuditExport)})
		}
		cw.Flush()
		err = cw.Error()
	}
	if err != nil {
		s.log.Error("web: audit export failed", "format", format, "err", err)
		http.Error(w, "the export failed", http.StatusInternalServerError)
		return
	}
	s.audit(r.Context(), u.actor(), "export.audit", fmt.Sprintf("format=%s entries=%d action=%q actor=%q from=%s to=%s", format, len(all), f.Action, f.Actor, f.FromDay, f.ToDay))
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="evident-audit-%s.%s"`, s.now().UTC().Format("20060102T150405Z"), format))
	w.Write(buf.Bytes())
}
