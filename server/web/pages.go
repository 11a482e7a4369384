package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/pct"
	"github.com/evident-dev/evident/internal/safetext"
	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/period"
	"github.com/evident-dev/evident/server/report"
	"github.com/evident-dev/evident/server/store"
)

// view is what every page template gets.
type view struct {
	Title  string
	User   *user
	Now    time.Time
	Policy string
	Nav    string
	Data   any
}

var funcs = template.FuncMap{
	"fmtTime": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "never"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return fmt.Sprint(t)
	},
	// lastDay is the last day a waiver covers: its expiry is the instant
	// it stops applying (an expiry date's following midnight).
	"lastDay":     func(t time.Time) string { return t.Add(-time.Nanosecond).UTC().Format("2006-01-02") },
	"statusLabel": statusLabel,
	"statusClass": func(s string) string { return "st-" + strings.ReplaceAll(s, "_", "-") },
	"statusColor": statusColor,
	// Rounded down, as everywhere (package pct).
	"pct":  func(f float64) string { return pct.Format(f, 1) + "%" },
	"join": strings.Join,
	// lineCount says how long an evidence excerpt is, for its summary.
	"lineCount": func(s string) string {
		if n := strings.Count(strings.TrimRight(s, "\n"), "\n") + 1; n > 1 {
			return strconv.Itoa(n) + " lines"
		}
		return "1 line"
	},
	"dur":  fmtDuration,
	"secs": period.Duration,
	"f1":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"derefInt": func(p *int) string {
		if p == nil {
			return ""
		}
		return strconv.Itoa(*p)
	},
}

func statusLabel(s string) string {
	switch s {
	case store.Pass:
		return "pass"
	case store.Fail:
		return "fail"
	case store.Unknown:
		return "unknown"
	case store.NotApplicable:
		return "n/a"
	case "", store.NoData:
		return "no data"
	}
	return s
}

func statusColor(s string) string {
	switch s {
	case store.Pass:
		return "#2e7d32"
	case store.Fail:
		return "#c62828"
	case store.Unknown:
		return "#e0a100"
	case store.NotApplicable:
		return "#9e9e9e"
	}
	return "#e8e8e8"
}

func fmtDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	case d >= time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	case d >= time.Minute:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	}
	return fmt.Sprintf("%d s", int(d.Seconds()))
}

func parsePages() (map[string]*template.Template, error) {
	ents, err := fs.ReadDir(templateFS, "templates")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, e := range ents {
		if e.Name() == "layout.html" {
			continue
		}
		t, err := template.New(e.Name()).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", e.Name(), err)
		}
		pages[e.Name()] = t
	}
	return pages, nil
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, page string, u *user, title string, data any) {
	var buf bytes.Buffer
	v := view{Title: title, User: u, Now: s.now().UTC(), Policy: s.policy.Name, Nav: strings.TrimSuffix(page, ".html"), Data: data}
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", v); err != nil {
		s.log.Error("web: render failed", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	// html/template escapes markup, not the characters that reorder or
	// hide text (a device's hostname with U+202E): make those visible.
	io.WriteString(w, safetext.Visible(buf.String()))
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, u *user, code int, title, msg string) {
	s.render(w, r, code, "error.html", u, title, map[string]any{"Code": code, "Heading": title, "Message": msg})
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, u *user, what string, err error) {
	s.log.Error("web: "+what, "path", r.URL.Path, "err", err)
	s.errorPage(w, r, u, http.StatusInternalServerError, "Error", "Something went wrong: "+what+". The server log has the details.")
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// --- fleet overview ---

type controlSummary struct {
	report.ControlOverview
	FailLink, UnknownLink, PassLink string
}

type fleetView struct {
	Devices, Compliant int
	Controls           []controlSummary
	Chart              chart
	GeneratedAt        time.Time
}

// overview reads the fleet's aggregates (and the daily figures when days >
// 0): never a loop over devices.
func (s *Server) overview(r *http.Request, days int) (*report.Overview, error) {
	return report.BuildOverview(r.Context(), s.st, s.policy, s.now().UTC(), days)
}

func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request, u *user) {
	o, err := s.overview(r, chartDays)
	if err != nil {
		s.internalError(w, r, u, "reading the fleet overview failed", err)
		return
	}
	v := fleetView{Devices: o.Devices, Compliant: o.Compliant, GeneratedAt: o.GeneratedAt}
	for _, c := range o.Controls {
		link := "/devices?control=" + url.QueryEscape(c.ID) + "&status="
		v.Controls = append(v.Controls, controlSummary{ControlOverview: c,
			PassLink: link + store.Pass, FailLink: link + store.Fail, UnknownLink: link + store.Unknown})
	}
	v.Chart = complianceChart(dailyCompliance(o))
	s.render(w, r, http.StatusOK, "fleet.html", u, "Fleet overview", v)
}

// --- device list ---

type deviceFilter struct {
	Control, Status, OS, Group, SeenBefore, Q, Sort string
	seenBefore                                      time.Duration
}

type deviceRow struct {
	ID, Hostname, OS string
	LastSeenAt       *time.Time
	Compliant        bool
	Statuses         []string // per policy control, in policy order
}

type devicesView struct {
	Filter   deviceFilter
	Controls []string
	Statuses []string
	OSes     []string
	Groups   []string
	Sorts    []string
	Rows     []deviceRow
	Total    int
	// Next is the query of the following page ("" on the last).
	Next  string
	Error string
}

var errBadFilter = errors.New("bad filter")

// parseDuration accepts Go durations and whole days ("7d"), up to ten years.
func parseDuration(v string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(v, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
		if days > 3650 {
			err = errBadFilter
		}
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil || d <= 0 || d > 3650*24*time.Hour {
		return 0, errBadFilter
	}
	return d, nil
}

// deviceStatuses are the status filters of the device list: a control's
// status (no_data: no recorded state), or the device's posture.
var deviceStatuses = []string{store.Pass, store.Fail, store.Unknown, store.NotApplicable, store.NoData, "compliant", "noncompliant"}

// knownOSes are the platforms agents run on.
var knownOSes = []string{"darwin", "linux", "windows"}

// parseFilter turns the device list's query parameters into a store query:
// control, status, os, group, seen_before, q (hostname prefix), sort
// (hostname or last_seen), cursor and limit.
func (s *Server) parseFilter(q url.Values) (deviceFilter, store.DeviceQuery, error) {
	f := deviceFilter{Control: q.Get("control"), Status: q.Get("status"), OS: q.Get("os"), Group: q.Get("group"),
		SeenBefore: q.Get("seen_before"), Q: q.Get("q"), Sort: q.Get("sort")}
	dq := store.DeviceQuery{Control: f.Control, GOOS: f.OS, Group: f.Group, Hostname: f.Q, Sort: f.Sort, After: q.Get("cursor"), Limit: pageSize}
	for _, v := range []string{f.Control, f.Status, f.OS, f.Group, f.SeenBefore, f.Q, f.Sort, q.Get("limit")} {
		if len(v) > maxParamLen {
			return f, dq, fmt.Errorf("%w: a filter value is too long", errBadFilter)
		}
	}
	if len(dq.After) > 2*maxParamLen+256 {
		return f, dq, fmt.Errorf("%w: the cursor is too long", errBadFilter)
	}
	if _, ok := s.policy.Groups[f.Group]; f.Group != "" && !ok {
		return f, dq, fmt.Errorf("%w: no group %q in the policy", errBadFilter, f.Group)
	}
	if f.Control != "" && !s.hasControl(f.Control) {
		return f, dq, fmt.Errorf("%w: no control %q in the policy", errBadFilter, f.Control)
	}
	switch f.Status {
	case "":
	case "compliant", "noncompliant":
		c := f.Status == "compliant"
		dq.Compliant = &c
	default:
		if !slices.Contains(deviceStatuses, f.Status) {
			return f, dq, fmt.Errorf("%w: status must be one of %s", errBadFilter, strings.Join(deviceStatuses, ", "))
		}
		dq.Status = f.Status
		for _, c := range s.policy.Controls {
			dq.Controls = append(dq.Controls, c.ID)
		}
	}
	switch f.Sort {
	case "", store.SortHostname, store.SortLastSeen:
	default:
		return f, dq, fmt.Errorf("%w: sort must be %s or %s", errBadFilter, store.SortHostname, store.SortLastSeen)
	}
	if f.SeenBefore != "" {
		d, err := parseDuration(f.SeenBefore)
		if err != nil {
			return f, dq, fmt.Errorf("%w: seen_before must be a duration like 24h or 7d", errBadFilter)
		}
		f.seenBefore = d
		dq.SeenBefore = s.now().UTC().Add(-d)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxPageSize {
			return f, dq, fmt.Errorf("%w: limit must be a whole number from 1 to %d", errBadFilter, store.MaxPageSize)
		}
		dq.Limit = n
	}
	return f, dq, nil
}

// pageSize is the device list's default page.
const pageSize = 50

func (s *Server) hasControl(id string) bool {
	for _, c := range s.policy.Controls {
		if c.ID == id {
			return true
		}
	}
	return false
}

// listPage reads one page of the device list as the query parameters ask.
func (s *Server) listPage(r *http.Request) (deviceFilter, store.DevicePage, error) {
	f, dq, err := s.parseFilter(r.URL.Query())
	if err != nil {
		return f, store.DevicePage{}, err
	}
	page, err := s.st.DevicePage(r.Context(), dq)
	if errors.Is(err, store.ErrBadCursor) {
		return f, page, fmt.Errorf("%w: the page cursor is not valid for this list; start from the first page", errBadFilter)
	}
	return f, page, err
}

// statusesOf are a listed device's statuses in policy order ("no_data" for a
// control without a recorded state).
func (s *Server) statusesOf(d store.DeviceStatus) []string {
	out := make([]string, len(s.policy.Controls))
	for i, c := range s.policy.Controls {
		out[i] = store.NoData
		for _, st := range d.States {
			if st.ControlID == c.ID {
				out[i] = st.Status
			}
		}
	}
	return out
}

func (s *Server) devicesPage(w http.ResponseWriter, r *http.Request, u *user) {
	v := devicesView{Statuses: deviceStatuses, OSes: knownOSes, Sorts: []string{store.SortHostname, store.SortLastSeen}}
	for _, c := range s.policy.Controls {
		v.Controls = append(v.Controls, c.ID)
	}
	for g := range s.policy.Groups {
		v.Groups = append(v.Groups, g)
	}
	slices.Sort(v.Groups)
	f, page, err := s.listPage(r)
	v.Filter = f
	if errors.Is(err, errBadFilter) {
		v.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, "devices.html", u, "Devices", v)
		return
	}
	if err != nil {
		s.internalError(w, r, u, "listing devices failed", err)
		return
	}
	fc, err := s.st.FleetCounts(r.Context())
	if err != nil {
		s.internalError(w, r, u, "reading the fleet counts failed", err)
		return
	}
	v.Total = fc.Devices
	for _, d := range page.Devices {
		v.Rows = append(v.Rows, deviceRow{ID: d.ID, Hostname: d.Hostname, OS: d.Device.OS(), LastSeenAt: d.LastSeenAt,
			Compliant: d.Compliant, Statuses: s.statusesOf(d)})
	}
	if page.Next != "" {
		q := r.URL.Query()
		q.Set("cursor", page.Next)
		v.Next = "/devices?" + q.Encode()
	}
	s.render(w, r, http.StatusOK, "devices.html", u, "Devices", v)
}

// --- device detail ---

type deviceControl struct {
	report.Control
	Timeline []segment
}

type deviceView struct {
	Device report.Device
	// Credentials is the device as the store authenticates it: its
	// certificate's expiry, a revocation.
	Credentials credentialsView
	Controls    []deviceControl
	Axis        []axisTick
	BarW, BarH  int
	From, To    time.Time
	Done        string
	CanAdmin    bool
	Hardware    hardwareView
}

// hardwareView is what identifies the machine: the serial number the
// server holds (from enrollment or the agent's last Hello), and the
// vendor, model and console user of the latest osinfo report.
type hardwareView struct {
	SerialNumber, Vendor, Model, ConsoleUser string
	// At is when the osinfo report was collected (zero without one).
	At time.Time
}

// hardware reads the device's newest osinfo report, if any; an error or
// an undecodable payload leaves those facts out.
func (s *Server) hardware(r *http.Request, d store.Device) hardwareView {
	v := hardwareView{SerialNumber: d.SerialNumber}
	obs, err := s.st.History(r.Context(), d.ID, evidence.OSInfo, 1)
	if err != nil || len(obs) == 0 || obs[0].Status != "ok" {
		return v
	}
	p, err := evidence.Decode[evidence.OSInfoPayload](evidence.OSInfo, obs[0].ParserVersion, obs[0].Payload)
	if err != nil {
		return v
	}
	v.Vendor, v.Model, v.ConsoleUser, v.At = p.HardwareVendor, p.HardwareModel, p.ConsoleUser, obs[0].CollectedAt
	if v.SerialNumber == "" {
		v.SerialNumber = p.SerialNumber
	}
	return v
}

func (s *Server) lookupDevice(w http.ResponseWriter, r *http.Request, u *user) (store.Device, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxDeviceID {
		s.errorPage(w, r, u, http.StatusNotFound, "Not found", "No such device.")
		return store.Device{}, false
	}
	d, err := s.st.Device(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.errorPage(w, r, u, http.StatusNotFound, "Not found", "No such device.")
		return d, false
	}
	if err != nil {
		s.internalError(w, r, u, "reading the device failed", err)
		return d, false
	}
	return d, true
}

// deviceReport is one device's recorded posture and intervals, with the
// waivers in force for it.
func (s *Server) deviceReport(r *http.Request, d store.Device) (report.Device, []store.ControlState, error) {
	now := s.now().UTC()
	active, err := s.st.WaiversOverlapping(r.Context(), now, now.Add(time.Nanosecond))
	if err != nil {
		return report.Device{}, nil, err
	}
	var mine []store.Waiver
	for _, w := range active {
		if w.DeviceID == d.ID {
			mine = append(mine, w)
		}
	}
	return report.BuildDevice(r.Context(), s.st, s.policy, d, mine)
}

func (s *Server) devicePage(w http.ResponseWriter, r *http.Request, u *user) {
	d, ok := s.lookupDevice(w, r, u)
	if !ok {
		return
	}
	rd, hist, err := s.deviceReport(r, d)
	if err != nil {
		s.internalError(w, r, u, "building the device report failed", err)
		return
	}
	now := s.now().UTC()
	from := now.Add(-chartDays * 24 * time.Hour)
	v := deviceView{Device: rd, BarW: timelineW, BarH: timelineH, From: from, To: now, CanAdmin: u.IsAdmin(),
		Axis: timelineAxis(from, now), Credentials: credentials(d, now), Hardware: s.hardware(r, d)}
	switch r.URL.Query().Get("done") {
	case "revoke":
		v.Done = "Credentials cut: the device's streams close within seconds on every server replica, and it can no longer connect, renew or enroll with its key."
	case "collect":
		v.Done = "Collect-now request sent: the server passes it to the device within a second while it is connected; reload to see the new evidence."
	case "tpm-change":
		v.Done = "TPM change allowed: the device's next enrollment may replace its EK or AK."
	case "waiver":
		v.Done = "Waiver granted: it is shown with the control in every report until it expires."
	}
	for _, c := range rd.Controls {
		v.Controls = append(v.Controls, deviceControl{Control: c, Timeline: timeline(hist, c.ID, from, now)})
	}
	s.render(w, r, http.StatusOK, "device.html", u, rd.Hostname, v)
}

// --- audit log ---

// --- admin actions ---

// adminFailed shows what went wrong with an admin service call and reports
// whether the request ends here: a refusal is a 400 (404 when something
// does not exist) with the service's message, the same the CLI prints; an
// action done but not audited is logged and carries on; anything else is a
// 500.
func (s *Server) adminFailed(w http.ResponseWriter, r *http.Request, u *user, what string, err error) bool {
	if err == nil {
		return false
	}
	if rf, ok := errors.AsType[*admin.Refusal](err); ok {
		if errors.Is(err, store.ErrNotFound) {
			s.errorPage(w, r, u, http.StatusNotFound, "Not found", rf.Error())
		} else {
			s.errorPage(w, r, u, http.StatusBadRequest, "Bad request", rf.Error())
		}
		return true
	}
	if errors.Is(err, admin.ErrNotAudited) {
		s.log.Error("web: audit log write failed", "err", err)
		return false
	}
	s.internalError(w, r, u, what, err)
	return true
}

func (s *Server) tpmChange(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PostForm.Get("device_id")
	hours := 24
	if h := r.PostForm.Get("hours"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || len(h) > 4 {
			s.errorPage(w, r, u, http.StatusBadRequest, "Bad request", "hours must be a whole number from 1 to 168.")
			return
		}
		hours = n
	}
	if _, err := s.adm.AllowTPMChange(r.Context(), u.actor(), id, time.Duration(hours)*time.Hour); s.adminFailed(w, r, u, "allowing the TPM change failed", err) {
		return
	}
	http.Redirect(w, r, path.Join("/devices", url.PathEscape(id))+"?done=tpm-change", http.StatusSeeOther)
}

// collectNow asks a device to collect now: admins only, audited by the
// admin service.
func (s *Server) collectNow(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PostForm.Get("device_id")
	if _, err := s.adm.RequestCollection(r.Context(), u.actor(), id, nil); s.adminFailed(w, r, u, "requesting a collection failed", err) {
		return
	}
	http.Redirect(w, r, path.Join("/devices", url.PathEscape(id))+"?done=collect", http.StatusSeeOther)
}

// revokeDevice revokes or retires a device: admins only, audited by the
// admin service.
func (s *Server) revokeDevice(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PostForm.Get("device_id")
	retire := r.PostForm.Get("kind") == "retire"
	if err := s.adm.RevokeDevice(r.Context(), u.actor(), id, r.PostForm.Get("reason"), retire); s.adminFailed(w, r, u, "revoking the device failed", err) {
		return
	}
	http.Redirect(w, r, path.Join("/devices", url.PathEscape(id))+"?done=revoke", http.StatusSeeOther)
}

type credentialsPageView struct {
	Secrets  []store.EnrollSecret
	Tokens   []store.Token
	CanAdmin bool
	Done     string
}

// credentialsPage lists enrollment secrets and web/API tokens.
func (s *Server) credentialsPage(w http.ResponseWriter, r *http.Request, u *user) {
	secrets, err := s.st.EnrollSecrets(r.Context())
	if err != nil {
		s.internalError(w, r, u, "reading the enrollment secrets failed", err)
		return
	}
	tokens, err := s.st.Tokens(r.Context())
	if err != nil {
		s.internalError(w, r, u, "reading the tokens failed", err)
		return
	}
	v := credentialsPageView{Secrets: secrets, Tokens: tokens, CanAdmin: u.IsAdmin()}
	switch r.URL.Query().Get("done") {
	case "secret":
		v.Done = "Enrollment secret revoked: it enrolls no device from now on."
	case "token":
		v.Done = "Token revoked: it no longer logs in or calls the API, and its sessions have ended."
	}
	s.render(w, r, http.StatusOK, "credentials.html", u, "Credentials", v)
}

func (s *Server) revokeSecret(w http.ResponseWriter, r *http.Request, u *user) {
	if err := s.adm.RevokeSecret(r.Context(), u.actor(), r.PostForm.Get("id")); s.adminFailed(w, r, u, "revoking the secret failed", err) {
		return
	}
	http.Redirect(w, r, "/credentials?done=secret", http.StatusSeeOther)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, u *user) {
	if err := s.adm.RevokeToken(r.Context(), u.actor(), r.PostForm.Get("id")); s.adminFailed(w, r, u, "revoking the token failed", err) {
		return
	}
	http.Redirect(w, r, "/credentials?done=token", http.StatusSeeOther)
}

// credentialsView says how a device authenticates now.
type credentialsView struct {
	// State is "valid", "expired", "revoked" or "retired" ("" when the
	// server has no certificate recorded: enrolled before it kept them).
	State    string
	NotAfter time.Time
	Since    *time.Time
	Reason   string
}

func credentials(d store.Device, now time.Time) credentialsView {
	v := credentialsView{NotAfter: d.CertNotAfter, Since: d.RevokedAt, Reason: d.RevokeReason}
	switch {
	case d.RevokedAt != nil && d.Retired:
		v.State = "retired"
	case d.RevokedAt != nil:
		v.State = "revoked"
	case d.CertNotAfter.IsZero():
	case !now.Before(d.CertNotAfter):
		v.State = "expired"
	default:
		v.State = "valid"
	}
	return v
}

// grantWaiver records an exception (waiver) for a device's control, or for
// all its controls: admins only, audited by the admin service.
func (s *Server) grantWaiver(w http.ResponseWriter, r *http.Request, u *user) {
	f := r.PostForm
	wv, err := s.adm.AddWaiver(r.Context(), u.actor(), admin.WaiverRequest{DeviceID: f.Get("device_id"), ControlID: f.Get("control_id"),
		Reason: f.Get("reason"), Approver: f.Get("approver"), Expires: f.Get("expires")})
	if s.adminFailed(w, r, u, "recording the waiver failed", err) {
		return
	}
	http.Redirect(w, r, path.Join("/devices", url.PathEscape(wv.DeviceID))+"?done=waiver", http.StatusSeeOther)
}
