package main

import (
	"bytes"
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
)

// osActor is who this test process is, as cliActor should record it.
func osActor(t *testing.T) string {
	t.Helper()
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	if name == "" || host == "" {
		t.Skip("no OS user name or hostname here")
	}
	return name + "@" + host
}

// auditLog returns the whole audit log, oldest first.
func auditLog(t *testing.T, dir string) []store.AuditEntry {
	t.Helper()
	st, err := sqlite.Open(dbPath(dir), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := st.AuditLog(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	return l
}

// runCLI runs the CLI entry point in-process.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// TestCLIAdminCommandsAudit: every CLI admin command writes exactly one
// audit entry naming the OS user and host, or the --as name with them.
func TestCLIAdminCommandsAudit(t *testing.T) {
	dir := seedDataDir(t)
	who := osActor(t)
	st, err := sqlite.Open(dbPath(dir), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2098, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := st.CreateToken(ctx, store.Token{ID: "tok_fixture0001", Hash: []byte("h"), Role: store.RoleAuditor, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateWaiver(ctx, store.Waiver{ID: "wvr_fixture0001", DeviceID: "dev-1", Reason: "r", Approver: "a", CreatedBy: "x",
		CreatedAt: t0, StartsAt: t0, ExpiresAt: t0.AddDate(0, 6, 0)}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	csvPath := filepath.Join(t.TempDir(), "inventory.csv")
	if err := os.WriteFile(csvPath, []byte("serial,hostname\nSN1,laptop-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		action string
		detail string // the entry's detail contains it
	}{
		{"secret create", []string{"secret", "create", "--label", "jamf-2098", "--single-use"}, admin.ActionSecretCreate, "label=jamf-2098 single_use=true expires=never"},
		{"token create", []string{"token", "create", "--role", "auditor", "--label", "acme audit"}, admin.ActionTokenCreate, `role=auditor label="acme audit" expires=`},
		{"token revoke", []string{"token", "revoke", "tok_fixture0001"}, admin.ActionTokenRevoke, "id=tok_fixture0001"},
		{"inventory import", []string{"inventory", "import", "--source", "Jamf", csvPath}, admin.ActionInventoryImport, "file=inventory.csv source=Jamf rows=1 sha256="},
		{"waiver add", []string{"waiver", "add", "--device", "dev-1", "--control", "DC-ENC-01", "--reason", "disk on order", "--approver", "CISO",
			"--starts", "2098-01-01", "--expires", "2098-03-31"}, admin.ActionWaiverAdd,
			`device_id=dev-1 control=DC-ENC-01 approver=CISO starts=2098-01-01T00:00:00Z expires=2098-04-01T00:00:00Z reason="disk on order"`},
		{"waiver revoke", []string{"waiver", "revoke", "wvr_fixture0001"}, admin.ActionWaiverRevoke, "waiver=wvr_fixture0001 device_id=dev-1 revoked_at="},
		{"device allow-tpm-change", []string{"device", "allow-tpm-change", "--for", "2h", "dev-1"}, admin.ActionTPMChange, "device_id=dev-1 until="},
	}
	for _, as := range []struct{ flag, actor string }{{"", "cli:" + who}, {"Ada Lovelace", "cli:Ada Lovelace (os user " + who + ")"}} {
		for _, tt := range tests {
			t.Run(tt.name+" as "+as.actor, func(t *testing.T) {
				args := append(append([]string{}, tt.args[:2]...), "--data-dir", dir)
				if as.flag != "" {
					args = append(args, "--as", as.flag)
				}
				args = append(args, tt.args[2:]...)
				before := len(auditLog(t, dir))
				if code, out, errOut := runCLI(args...); code != 0 {
					t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
				}
				l := auditLog(t, dir)[before:]
				if len(l) != 1 {
					t.Fatalf("%d new audit entries, want 1: %+v", len(l), l)
				}
				if l[0].Action != tt.action || l[0].Actor != as.actor || !strings.Contains(l[0].Detail, tt.detail) {
					t.Errorf("audit entry = %q by %q: %q; want %q by %q containing %q", l[0].Action, l[0].Actor, l[0].Detail, tt.action, as.actor, tt.detail)
				}
			})
		}
	}
	// A waiver records its creator as the audit log names it; --created-by
	// is the old spelling of --as.
	if code, _, errOut := runCLI("waiver", "add", "--data-dir", dir, "--created-by", "alice", "--device", "dev-1", "--reason", "r", "--approver", "a",
		"--starts", "2098-01-01", "--expires", "2098-02-01"); code != 0 {
		t.Fatalf("waiver add --created-by: %s", errOut)
	}
	l := auditLog(t, dir)
	if last := l[len(l)-1]; last.Actor != "cli:alice (os user "+who+")" {
		t.Errorf("--created-by: actor %q", last.Actor)
	}
	st, _ = sqlite.Open(dbPath(dir), true)
	defer st.Close()
	ws, _ := st.ListWaivers(ctx)
	if !slices.ContainsFunc(ws, func(w store.Waiver) bool { return w.CreatedBy == "cli:alice (os user "+who+")" }) {
		t.Errorf("no waiver created by cli:alice: %+v", ws)
	}
	// A bad --as is a usage error, and nothing is done or audited.
	before := len(l)
	if code, _, errOut := runCLI("device", "allow-tpm-change", "--data-dir", dir, "--as", "eve (admin)", "dev-1"); code != 2 || !strings.Contains(errOut, "--as must be") {
		t.Errorf("--as with parentheses: exit %d, %q", code, errOut)
	}
	if n := len(auditLog(t, dir)); n != before {
		t.Errorf("a bad --as was audited")
	}
}

// webClient logs in to a web UI with a token, as a browser does.
type webClient struct {
	t    *testing.T
	srv  *httptest.Server
	c    *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func newWebClient(t *testing.T, srv *httptest.Server, token string) *webClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := *srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	w := &webClient{t: t, srv: srv, c: &c}
	_, page := w.get("/login")
	if code, _ := w.post("/login", url.Values{"csrf": {w.field(page)}, "token": {token}, "next": {"/"}}); code != http.StatusSeeOther {
		t.Fatalf("login: %d", code)
	}
	_, home := w.get("/")
	w.csrf = w.field(home)
	return w
}

func (w *webClient) field(page string) string {
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		w.t.Fatalf("no csrf field in\n%s", page)
	}
	return m[1]
}

func (w *webClient) do(req *http.Request) (int, string) {
	res, err := w.c.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (w *webClient) get(path string) (int, string) {
	req, _ := http.NewRequest("GET", w.srv.URL+path, nil)
	return w.do(req)
}

func (w *webClient) post(path string, form url.Values) (int, string) {
	if w.csrf != "" {
		form.Set("csrf", w.csrf)
	}
	req, _ := http.NewRequest("POST", w.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", w.srv.URL)
	return w.do(req)
}

// frontEnds is a data directory, the CLI on it and the web UI on it (its
// clock at 2098-01-01), logged in with an admin token the CLI made.
func frontEnds(t *testing.T) (dir string, webAdmin *webClient, webNow time.Time) {
	t.Helper()
	dir = seedDataDir(t)
	code, tok, errOut := runCLI("token", "create", "--data-dir", dir, "--role", "admin", "--label", "web-admin", "--expires", "0")
	if code != 0 {
		t.Fatalf("token create: %s", errOut)
	}
	st, err := sqlite.Open(dbPath(dir), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	webNow = time.Date(2098, 1, 1, 0, 0, 0, 0, time.UTC)
	h, err := web.New(web.Config{Store: st, Policy: controls.Default(), Now: func() time.Time { return webNow }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return dir, newWebClient(t, srv, strings.TrimSpace(tok)), webNow
}

// TestWaiverSameFromCLIAndWeb: the same waiver asked for on the CLI and on
// the web is stored the same and audited the same, but for who and when.
func TestWaiverSameFromCLIAndWeb(t *testing.T) {
	dir, w, webNow := frontEnds(t)
	code, out, errOut := runCLI("waiver", "add", "--data-dir", dir, "--device", "dev-1", "--control", "DC-ENC-01", "--reason", "disk on order",
		"--approver", "CISO", "--starts", webNow.Format(time.RFC3339), "--expires", "2098-06-30")
	if code != 0 {
		t.Fatalf("CLI waiver add: %s%s", out, errOut)
	}
	if code, body := w.post("/admin/waiver", url.Values{"device_id": {"dev-1"}, "control_id": {"DC-ENC-01"}, "reason": {"disk on order"},
		"approver": {"CISO"}, "expires": {"2098-06-30"}}); code != http.StatusSeeOther {
		t.Fatalf("web waiver: %d\n%s", code, body)
	}
	st, err := sqlite.Open(dbPath(dir), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ws, err := st.ListWaivers(context.Background())
	if err != nil || len(ws) != 2 {
		t.Fatalf("waivers: %+v, %v", ws, err)
	}
	var entries []store.AuditEntry
	for _, e := range auditLog(t, dir) {
		if e.Action == admin.ActionWaiverAdd {
			entries = append(entries, e)
		}
	}
	if len(entries) != 2 {
		t.Fatalf("waiver.add entries: %+v", entries)
	}
	if !strings.HasPrefix(ws[0].CreatedBy, "cli:") || !strings.Contains(ws[1].CreatedBy, "web-admin, admin") ||
		ws[0].CreatedBy != entries[0].Actor || ws[1].CreatedBy != entries[1].Actor {
		t.Errorf("creators %q, %q; audit actors %q, %q", ws[0].CreatedBy, ws[1].CreatedBy, entries[0].Actor, entries[1].Actor)
	}
	for i := range ws {
		entries[i].Detail = strings.Replace(entries[i].Detail, ws[i].ID, "ID", 1)
		ws[i].ID, ws[i].CreatedBy, ws[i].CreatedAt = "", "", time.Time{}
	}
	if ws[0] != ws[1] {
		t.Errorf("stored waivers differ:\nCLI %+v\nweb %+v", ws[0], ws[1])
	}
	if !ws[0].ExpiresAt.Equal(time.Date(2098, 7, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("expiry %s, want the end of 2098-06-30", ws[0].ExpiresAt)
	}
	if entries[0].Detail != entries[1].Detail {
		t.Errorf("audit details differ:\nCLI %s\nweb %s", entries[0].Detail, entries[1].Detail)
	}
}

// TestAdminRefusals: a refused waiver gets the same message from the CLI
// and the web, stores nothing, and is audited as waiver.add.denied with the
// same detail from both.
func TestAdminRefusals(t *testing.T) {
	dir, w, _ := frontEnds(t)
	tests := []struct {
		name     string
		device   string
		reason   string
		expires  string
		msg      string
		httpCode int
	}{
		{"missing reason", "dev-1", " ", "2098-06-30", "a reason is required", http.StatusBadRequest},
		{"expiry in the past", "dev-1", "disk on order", "2020-01-01", "the expiry 2020-01-02T00:00:00Z is in the past", http.StatusBadRequest},
		{"unknown device", "dev-nobody", "disk on order", "2098-06-30", `no device "dev-nobody"`, http.StatusNotFound},
		{"bad date", "dev-1", "disk on order", "soon", `expires "soon": want a date (2026-12-31) or an RFC 3339 time (2026-12-31T18:00:00Z)`, http.StatusBadRequest},
		{"reason too long", "dev-1", strings.Repeat("x", admin.MaxText+1), "2098-06-30", "the reason is longer than 512 characters", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(auditLog(t, dir))
			code, _, errOut := runCLI("waiver", "add", "--data-dir", dir, "--device", tt.device, "--control", "DC-ENC-01", "--reason", tt.reason,
				"--approver", "CISO", "--expires", tt.expires)
			if code != 1 || errOut != "evident-server: "+tt.msg+"\n" {
				t.Errorf("CLI: exit %d, stderr %q; want 1, %q", code, errOut, tt.msg)
			}
			httpCode, body := w.post("/admin/waiver", url.Values{"device_id": {tt.device}, "control_id": {"DC-ENC-01"}, "reason": {tt.reason},
				"approver": {"CISO"}, "expires": {tt.expires}})
			if httpCode != tt.httpCode || !strings.Contains(body, html.EscapeString(tt.msg)) {
				t.Errorf("web: %d, want %d with %q in\n%s", httpCode, tt.httpCode, tt.msg, body)
			}
			l := auditLog(t, dir)[before:]
			if len(l) != 2 || l[0].Action != admin.ActionWaiverAdd+admin.Denied || l[1].Action != l[0].Action ||
				l[0].Detail != l[1].Detail || !strings.HasPrefix(l[0].Detail, tt.msg+"; device_id=") {
				t.Errorf("audit entries = %+v; want two waiver.add.denied with the same detail", l)
			} else if !strings.HasPrefix(l[0].Actor, "cli:") || !strings.Contains(l[1].Actor, "web-admin") {
				t.Errorf("actors %q, %q", l[0].Actor, l[1].Actor)
			}
		})
	}
	st, err := sqlite.Open(dbPath(dir), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ws, _ := st.ListWaivers(context.Background()); len(ws) != 0 {
		t.Errorf("refused waivers were stored: %+v", ws)
	}
}
