package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
	"github.com/evident-dev/evident/server/web/webtest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t     *testing.T
	st    store.Store
	fleet webtest.Fleet
	srv   *httptest.Server
	clock *clock
}

func newEnv(t *testing.T, useTLS bool) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := webtest.Seed(t, st)
	c := &clock{t: webtest.Now}
	h, err := web.New(web.Config{Store: st, Policy: f.Policy, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &env{t: t, st: st, fleet: f, srv: srv, clock: c}
}

// browser is a client with a cookie jar that does not follow redirects.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := e.srv.Client()
	cc := *c
	cc.Jar = jar
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, c: &cc}
}

type resp struct {
	code   int
	body   string
	header http.Header
	cookie map[string]*http.Cookie
}

func (b *browser) do(req *http.Request) resp {
	b.e.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	r := resp{code: res.StatusCode, body: string(body), header: res.Header, cookie: map[string]*http.Cookie{}}
	for _, c := range res.Cookies() {
		r.cookie[c.Name] = c
	}
	return r
}

func (b *browser) get(path string) resp {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values, hdr ...string) resp {
	b.e.t.Helper()
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.e.srv.URL)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in page:\n%s", body)
	}
	return m[1]
}

// login logs in with token and returns the CSRF token of the page after.
func (b *browser) login(token string) string {
	t := b.e.t
	t.Helper()
	page := b.get("/login")
	r := b.post("/login", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {token}, "next": {"/"}})
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("login: %d %s, want 303 to /\n%s", r.code, r.header.Get("Location"), r.body)
	}
	home := b.get("/")
	if home.code != http.StatusOK {
		t.Fatalf("GET / after login: %d", home.code)
	}
	return csrfOf(t, home.body)
}

func (e *env) audit(action string) []store.AuditEntry {
	e.t.Helper()
	all, err := e.st.AuditLog(context.Background(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditEntry
	for _, a := range all {
		if a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

func TestLoginSuccessSetsHardenedCookie(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			e := newEnv(t, useTLS)
			b := e.browser()
			page := b.get("/login")
			if page.code != 200 || !strings.Contains(page.body, `name="token"`) {
				t.Fatalf("GET /login = %d", page.code)
			}
			r := b.post("/login", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {e.fleet.AuditorToken}, "next": {"/devices"}})
			if r.code != http.StatusSeeOther || r.header.Get("Location") != "/devices" {
				t.Fatalf("POST /login = %d → %q", r.code, r.header.Get("Location"))
			}
			c := r.cookie["evident_session"]
			if c == nil {
				t.Fatalf("no session cookie; cookies %v", r.header["Set-Cookie"])
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure != useTLS {
				t.Errorf("session cookie %q: HttpOnly=%v SameSite=%v Path=%q Secure=%v; want HttpOnly, Strict, /, Secure=%v",
					c.Raw, c.HttpOnly, c.SameSite, c.Path, c.Secure, useTLS)
			}
			if c.MaxAge <= 0 || c.MaxAge > int((12*time.Hour).Seconds()) {
				t.Errorf("session cookie Max-Age %d, want in (0, 12h]", c.MaxAge)
			}
			if strings.Contains(r.header.Get("Set-Cookie"), e.fleet.AuditorToken) {
				t.Errorf("the token itself is in a cookie")
			}
			dev := b.get("/devices")
			if dev.code != 200 || !strings.Contains(dev.body, "laptop-alice") || !strings.Contains(dev.body, "external-auditor") {
				t.Errorf("GET /devices after login = %d", dev.code)
			}
			if l := e.audit("login"); len(l) != 1 || !strings.Contains(l[0].Actor, "external-auditor") || !strings.Contains(l[0].Actor, "auditor") {
				t.Errorf("audit login entries = %+v", l)
			}
		})
	}
}

func TestLoginFailure(t *testing.T) {
	e := newEnv(t, false)
	tests := []struct {
		name  string
		token string
	}{
		{"wrong token", "evw1_not-a-real-token"},
		{"empty", ""},
		{"oversized", strings.Repeat("x", 5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := e.browser()
			page := b.get("/login")
			r := b.post("/login", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {tt.token}})
			if r.code != http.StatusUnauthorized || !strings.Contains(r.body, "Invalid or expired token") {
				t.Errorf("POST /login = %d, want 401 with a message", r.code)
			}
			if c := r.cookie["evident_session"]; c != nil && c.Value != "" {
				t.Errorf("failed login set a session cookie")
			}
			if got := b.get("/"); got.code != http.StatusSeeOther || !strings.HasPrefix(got.header.Get("Location"), "/login") {
				t.Errorf("GET / after failed login = %d → %s, want redirect to /login", got.code, got.header.Get("Location"))
			}
		})
	}
	if n := len(e.audit("login.failed")); n != len(tests) {
		t.Errorf("%d login.failed audit entries, want %d", n, len(tests))
	}
	// An expired token is refused too.
	e.clock.add(web.DefaultTokenTTL + time.Hour)
	b := e.browser()
	page := b.get("/login")
	if r := b.post("/login", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {e.fleet.AuditorToken}}); r.code != http.StatusUnauthorized {
		t.Errorf("login with an expired token = %d, want 401", r.code)
	}
}

func TestLoginCSRF(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	// No login cookie, no field.
	if r := b.post("/login", url.Values{"token": {e.fleet.AuditorToken}}); r.code != http.StatusForbidden || r.cookie["evident_session"] != nil {
		t.Errorf("login without CSRF = %d, want 403 and no session", r.code)
	}
	page := b.get("/login")
	csrf := csrfOf(t, page.body)
	if r := b.post("/login", url.Values{"csrf": {csrf + "x"}, "token": {e.fleet.AuditorToken}}); r.code != http.StatusForbidden {
		t.Errorf("login with a wrong CSRF token = %d, want 403", r.code)
	}
	page = b.get("/login")
	csrf = csrfOf(t, page.body)
	if r := b.post("/login", url.Values{"csrf": {csrf}, "token": {e.fleet.AuditorToken}}, "Origin", "https://evil.example"); r.code != http.StatusForbidden {
		t.Errorf("cross-origin login = %d, want 403", r.code)
	}
	// Login redirects stay on the site.
	if r := b.post("/login", url.Values{"csrf": {csrf}, "token": {e.fleet.AuditorToken}, "next": {"//evil.example/x"}}); r.header.Get("Location") != "/" {
		t.Errorf("login with next=//evil.example redirected to %q, want /", r.header.Get("Location"))
	}
}

func TestFormCSRF(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	csrf := b.login(e.fleet.AdminToken)
	form := func(tok string) url.Values {
		return url.Values{"csrf": {tok}, "device_id": {webtest.Alice}, "hours": {"2"}}
	}
	tests := []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"missing token", url.Values{"device_id": {webtest.Alice}}, nil},
		{"wrong token", form("AAAA" + csrf[4:]), nil},
		{"cross origin", form(csrf), []string{"Origin", "https://evil.example"}},
		{"cross site fetch", form(csrf), []string{"Sec-Fetch-Site", "cross-site"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.post("/admin/tpm-change", tt.form, tt.hdr...)
			if r.code != http.StatusForbidden {
				t.Errorf("POST /admin/tpm-change = %d, want 403", r.code)
			}
			if err := e.st.TakeTPMChangeAllowance(context.Background(), webtest.Alice, e.clock.now()); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refused form changed state: allowance %v", err)
			}
		})
	}
	if r := b.post("/logout", url.Values{}); r.code != http.StatusForbidden {
		t.Errorf("logout without CSRF = %d, want 403", r.code)
	}
	if r := b.get("/"); r.code != http.StatusOK {
		t.Errorf("session gone after refused logout: %d", r.code)
	}
	if n := len(e.audit("tpm-change.denied")); n != len(tests) {
		t.Errorf("%d tpm-change.denied entries, want %d", n, len(tests))
	}
}

func TestAuditorCannotDoAdminActions(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	csrf := b.login(e.fleet.AuditorToken)
	r := b.post("/admin/tpm-change", url.Values{"csrf": {csrf}, "device_id": {webtest.Alice}, "hours": {"24"}})
	if r.code != http.StatusForbidden || !strings.Contains(r.body, "requires the admin role") {
		t.Fatalf("auditor POST /admin/tpm-change = %d, want 403 with explanation\n%s", r.code, r.body)
	}
	if err := e.st.TakeTPMChangeAllowance(context.Background(), webtest.Alice, e.clock.now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("auditor's refused action left an allowance: %v", err)
	}
	denied := e.audit("tpm-change.denied")
	if len(denied) != 1 || !strings.Contains(denied[0].Actor, "auditor") || !strings.Contains(denied[0].Detail, webtest.Alice) {
		t.Errorf("audit tpm-change.denied = %+v, want one entry naming the auditor and the device", denied)
	}
	if len(e.audit("tpm-change")) != 0 {
		t.Errorf("a refused action was audited as done")
	}
}

func TestAdminAllowsTPMChange(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	csrf := b.login(e.fleet.AdminToken)
	r := b.post("/admin/tpm-change", url.Values{"csrf": {csrf}, "device_id": {webtest.Alice}, "hours": {"2"}})
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/devices/"+webtest.Alice+"?done=tpm-change" {
		t.Fatalf("admin POST /admin/tpm-change = %d → %q\n%s", r.code, r.header.Get("Location"), r.body)
	}
	if done := b.get(r.header.Get("Location")); !strings.Contains(done.body, "TPM change allowed") {
		t.Errorf("device page does not confirm the action")
	}
	if l := e.audit("tpm-change"); len(l) != 1 || !strings.Contains(l[0].Actor, "admin") || !strings.Contains(l[0].Detail, "until=2026-03-31T14:00:00Z") {
		t.Errorf("audit tpm-change = %+v", l)
	}
	if err := e.st.TakeTPMChangeAllowance(context.Background(), webtest.Alice, e.clock.now().Add(time.Hour)); err != nil {
		t.Errorf("allowance not stored: %v", err)
	}
	for _, tt := range []struct {
		name string
		form url.Values
		code int
	}{
		{"unknown device", url.Values{"device_id": {"dev_nope"}}, 404},
		{"hours too large", url.Values{"device_id": {webtest.Alice}, "hours": {"9999"}}, 400},
		{"hours not a number", url.Values{"device_id": {webtest.Alice}, "hours": {"1e3"}}, 400},
		{"no device", url.Values{}, 400},
	} {
		tt.form.Set("csrf", csrf)
		if r := b.post("/admin/tpm-change", tt.form); r.code != tt.code {
			t.Errorf("%s: %d, want %d", tt.name, r.code, tt.code)
		}
	}
}

func TestLogoutEndsSession(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	csrf := b.login(e.fleet.AuditorToken)
	u, _ := url.Parse(e.srv.URL)
	old := b.c.Jar.Cookies(u)
	r := b.post("/logout", url.Values{"csrf": {csrf}})
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Fatalf("logout = %d → %q", r.code, r.header.Get("Location"))
	}
	if c := r.cookie["evident_session"]; c == nil || c.MaxAge >= 0 {
		t.Errorf("logout did not clear the cookie")
	}
	// Replaying the old cookie does not work: the session is gone server-side.
	b2 := e.browser()
	b2.c.Jar.SetCookies(u, old)
	if r := b2.get("/"); r.code != http.StatusSeeOther {
		t.Errorf("old session cookie after logout: %d, want redirect to login", r.code)
	}
	if len(e.audit("logout")) != 1 {
		t.Errorf("logout not audited")
	}
}

func TestSessionExpires(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	e.clock.add(web.DefaultSessionTTL - time.Minute)
	if r := b.get("/"); r.code != 200 {
		t.Errorf("before expiry: %d", r.code)
	}
	e.clock.add(2 * time.Minute)
	if r := b.get("/"); r.code != http.StatusSeeOther {
		t.Errorf("after expiry: %d, want redirect to login", r.code)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	for _, p := range []string{"/login", "/", "/devices", "/devices/" + webtest.Alice, "/period", "/static/style.css", "/nope", "/api/v1/fleet"} {
		r := b.get(p)
		want := map[string]string{
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
		}
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", p, k, got, v)
			}
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if strings.Contains(r.body, "http://") && strings.Contains(r.header.Get("Content-Type"), "html") {
			for _, m := range regexp.MustCompile(`(?:src|href)="(https?://[^"]+)"`).FindAllStringSubmatch(r.body, -1) {
				t.Errorf("%s: external reference %s", p, m[1])
			}
		}
	}
}

func TestPages(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	tests := []struct {
		path string
		code int
		want []string
		not  []string
	}{
		{"/", 200, []string{"Fleet overview", "DC-FW-01", "DC-BOOT-01", "DC-AGENT-01", "<polyline", "all controls"}, nil},
		{"/devices", 200, []string{"laptop-alice", "macbook-bob", "desk-carol", "3 shown of 3 devices"}, []string{"next page"}},
		{"/devices?control=DC-FW-01&status=fail", 200, []string{"macbook-bob", "1 shown of 3 devices"}, []string{"laptop-alice", "desk-carol"}},
		{"/devices?limit=1", 200, []string{"desk-carol", "1 shown of 3 devices", "next page", "cursor="}, []string{"laptop-alice", "macbook-bob"}},
		{"/devices?limit=1&sort=last_seen", 200, []string{"desk-carol", "next page"}, []string{"laptop-alice", "macbook-bob"}},
		{"/devices?q=MACBOOK", 200, []string{"macbook-bob"}, []string{"laptop-alice", "desk-carol"}},
		{"/devices?q=%25", 200, []string{"No device matches"}, []string{"laptop-alice"}},
		{"/devices?cursor=garbage", 400, []string{"cursor is not valid"}, nil},
		{"/devices?sort=evil", 400, []string{"sort must be"}, nil},
		{"/devices?limit=100000", 400, []string{"limit must be"}, nil},
		{"/devices?status=compliant", 200, []string{"laptop-alice"}, []string{"macbook-bob", "desk-carol"}},
		{"/devices?os=windows", 200, []string{"desk-carol"}, []string{"laptop-alice", "macbook-bob"}},
		{"/devices?seen_before=3d", 200, []string{"desk-carol"}, []string{"laptop-alice", "macbook-bob"}},
		{"/devices?control=NOPE", 400, []string{"no control"}, nil},
		{"/devices?status=evil", 400, []string{"status must be"}, nil},
		{"/devices?seen_before=forever", 400, []string{"seen_before"}, nil},
		{"/devices/" + webtest.Alice, 200, []string{"laptop-alice", "DC-FW-01", "IPv4 inbound denied by default", "<rect", "/usr/sbin/nft -j list ruleset", "Reason:"}, nil},
		{"/devices/" + webtest.Bob, 200, []string{"macbook-bob", "Application Firewall off (state 0)"}, nil},
		{"/audit", 200, []string{"login"}, nil},
		{"/period?from=2026-03-01&to=2026-03-31&seed=7", 200, []string{"Period report", "DC-FW-01", "macbook-bob", "/period.csv?from=2026-03-01&amp;seed=7&amp;to=2026-03-31"}, nil},
		{"/period?from=2026-03-31&to=2026-03-01", 400, []string{"from must not be after to"}, nil},
		{"/period?from=yesterday", 400, []string{"dates like"}, nil},
		{"/period?from=1900-01-01&to=2026-01-01", 400, []string{"at most"}, nil},
		{"/period?seed=abc", 400, []string{"seed"}, nil},
		{"/devices?os=" + strings.Repeat("a", 200), 400, []string{"too long"}, nil},
		{"/devices?os=" + strings.Repeat("a", 3000), http.StatusRequestURITooLong, nil, nil},
	}
	for _, tt := range tests {
		r := b.get(tt.path)
		if r.code != tt.code {
			t.Errorf("GET %s = %d, want %d", tt.path, r.code, tt.code)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("GET %s: no %q in page", tt.path, w)
			}
		}
		for _, w := range tt.not {
			if strings.Contains(r.body, w) {
				t.Errorf("GET %s: %q should not be in page", tt.path, w)
			}
		}
	}
}

func TestPeriodExports(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	csv := b.get("/period.csv?from=2026-03-01&to=2026-03-31&seed=7")
	if csv.code != 200 || !strings.HasPrefix(csv.header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(csv.header.Get("Content-Disposition"), "attachment") || !strings.Contains(csv.body, "macbook-bob") {
		t.Errorf("period.csv = %d %q %q\n%s", csv.code, csv.header.Get("Content-Type"), csv.header.Get("Content-Disposition"), csv.body)
	}
	js := b.get("/period.json?from=2026-03-01&to=2026-03-31&seed=7")
	var rep struct {
		Seed     int64 `json:"seed"`
		Controls []struct {
			ID string `json:"id"`
		} `json:"controls"`
	}
	if js.code != 200 || json.Unmarshal([]byte(js.body), &rep) != nil || rep.Seed != 7 || len(rep.Controls) != 3 {
		t.Errorf("period.json = %d, seed %d, %d controls", js.code, rep.Seed, len(rep.Controls))
	}
	if len(e.audit("export.period")) != 2 {
		t.Errorf("exports not audited")
	}
	if r := b.get("/period.csv?from=bad"); r.code != 400 {
		t.Errorf("period.csv with a bad date = %d, want 400", r.code)
	}
}

func TestUnknownDevice404(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	for _, p := range []string{"/devices/dev_nope", "/devices/" + strings.Repeat("x", 500), "/no/such/page"} {
		if r := b.get(p); r.code != 404 {
			t.Errorf("GET %s = %d, want 404", p, r.code)
		}
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/devices/dev_nope", nil)
	req.Header.Set("Authorization", "Bearer "+e.fleet.AuditorToken)
	if r := b.do(req); r.code != 404 || !strings.Contains(r.body, "no such device") {
		t.Errorf("API unknown device = %d %s", r.code, r.body)
	}
}

func TestUnauthenticatedRedirects(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	for _, p := range []string{"/", "/devices?status=fail", "/devices/" + webtest.Alice, "/period", "/period.csv", "/audit"} {
		r := b.get(p)
		if r.code != http.StatusSeeOther || r.header.Get("Location") != "/login?next="+url.QueryEscape(p) {
			t.Errorf("GET %s unauthenticated = %d → %q", p, r.code, r.header.Get("Location"))
		}
	}
	if r := b.post("/admin/tpm-change", url.Values{"device_id": {webtest.Alice}}); r.code != http.StatusUnauthorized {
		t.Errorf("unauthenticated admin POST = %d, want 401", r.code)
	}
	if r := b.post("/login", url.Values{"token": {strings.Repeat("a", 20<<10)}}); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized login form = %d, want 413", r.code)
	}
}

func TestBearerAPI(t *testing.T) {
	e := newEnv(t, false)
	c := e.srv.Client()
	get := func(path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		return res.StatusCode, string(b)
	}
	for _, auth := range []string{"", "Bearer ", "Bearer evw1_wrong", "Basic " + e.fleet.AuditorToken, "Bearer " + strings.Repeat("a", 1000)} {
		if code, _ := get("/api/v1/fleet", auth); code != 401 {
			t.Errorf("API with Authorization %.30q = %d, want 401", auth, code)
		}
	}
	auditor := "Bearer " + e.fleet.AuditorToken
	code, body := get("/api/v1/fleet", auditor)
	var fleet struct {
		Devices   int `json:"devices_enrolled"`
		Compliant int `json:"devices_compliant"`
		Controls  []struct {
			ID         string
			Pass, Fail int
			Unknown    int
			NoData     int `json:"no_data"`
		}
		DevicesURL string `json:"devices_url"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &fleet) != nil || fleet.Devices != 3 || fleet.Compliant != 1 ||
		len(fleet.Controls) != len(e.fleet.Policy.Controls) || fleet.DevicesURL != "/api/v1/devices" {
		t.Errorf("API fleet = %d, %+v\n%s", code, fleet, body)
	}
	// Every device is on exactly one page, following next links.
	seen := map[string]int{}
	for next, pages := "/api/v1/devices?limit=2", 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatalf("API devices: more pages than devices")
		}
		code, body := get(next, auditor)
		var page struct {
			Devices []struct{ Hostname string }
			Next    string
		}
		if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
			t.Fatalf("API devices page %s = %d\n%s", next, code, body)
		}
		for _, d := range page.Devices {
			seen[d.Hostname]++
		}
		next = page.Next
	}
	if len(seen) != 3 || seen["laptop-alice"] != 1 || seen["macbook-bob"] != 1 || seen["desk-carol"] != 1 {
		t.Errorf("API devices paged: %v, want each of the 3 devices once", seen)
	}
	code, body = get("/api/v1/devices?control=DC-FW-01&status=fail", auditor)
	if code != 200 || !strings.Contains(body, "macbook-bob") || strings.Contains(body, "laptop-alice") {
		t.Errorf("API devices filtered = %d\n%s", code, body)
	}
	if code, _ = get("/api/v1/devices?status=nope", auditor); code != 400 {
		t.Errorf("API devices bad filter = %d, want 400", code)
	}
	code, body = get("/api/v1/devices/"+webtest.Alice, auditor)
	if code != 200 || !strings.Contains(body, `"hostname": "laptop-alice"`) || !strings.Contains(body, `"intervals"`) {
		t.Errorf("API device = %d\n%.500s", code, body)
	}
	code, body = get("/api/v1/period?from=2026-03-01&to=2026-03-31&seed=3", "Bearer "+e.fleet.AdminToken)
	if code != 200 || !strings.Contains(body, `"seed": 3`) {
		t.Errorf("API period = %d\n%.500s", code, body)
	}
	if code, _ = get("/api/v1/nope", auditor); code != 404 {
		t.Errorf("API unknown endpoint = %d, want 404", code)
	}
	// Read-only: no unsafe methods.
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/fleet", nil)
	req.Header.Set("Authorization", auditor)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed && res.StatusCode != http.StatusNotFound {
		t.Errorf("POST /api/v1/fleet = %d, want 405 or 404", res.StatusCode)
	}
	// The session cookie is not an API credential, and a bearer token does
	// not open pages.
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	if r := b.get("/api/v1/fleet"); r.code != 401 {
		t.Errorf("API with a session cookie only = %d, want 401", r.code)
	}
}

func TestNewToken(t *testing.T) {
	a, ida, ha := web.NewToken()
	b, idb, hb := web.NewToken()
	if a == b || ida == idb || string(ha) == string(hb) {
		t.Errorf("tokens repeat")
	}
	if !strings.HasPrefix(a, web.TokenPrefix) || len(a) < 40 || string(web.HashToken(a)) != string(ha) {
		t.Errorf("token %q, hash mismatch", a)
	}
}

// TestWaivers: an admin grants a waiver (exception) from the device page;
// an auditor's attempt is refused and audited; bad forms are refused.
func TestWaivers(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	form := func(csrf string) url.Values {
		return url.Values{"csrf": {csrf}, "device_id": {webtest.Alice}, "control_id": {"DC-FW-01"},
			"reason": {"firewall replaced next sprint"}, "approver": {"CISO"}, "expires": {"2026-04-30"}}
	}

	aud := e.browser()
	r := aud.post("/admin/waiver", form(aud.login(e.fleet.AuditorToken)))
	if r.code != http.StatusForbidden || !strings.Contains(r.body, "requires the admin role") {
		t.Fatalf("auditor POST /admin/waiver = %d\n%s", r.code, r.body)
	}
	if ws, _ := e.st.ListWaivers(ctx); len(ws) != 0 {
		t.Fatalf("an auditor created a waiver: %+v", ws)
	}
	if d := e.audit("waiver.denied"); len(d) != 1 || !strings.Contains(d[0].Actor, "auditor") {
		t.Errorf("audit waiver.denied = %+v", d)
	}

	adm := e.browser()
	csrf := adm.login(e.fleet.AdminToken)
	r = adm.post("/admin/waiver", form(csrf))
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/devices/"+webtest.Alice+"?done=waiver" {
		t.Fatalf("admin POST /admin/waiver = %d → %q\n%s", r.code, r.header.Get("Location"), r.body)
	}
	// Expiring 2026-04-30 covers that day: it ends at the midnight after
	// (the admin service reads the date as the CLI does).
	ws, err := e.st.ListWaivers(ctx)
	if err != nil || len(ws) != 1 || ws[0].ControlID != "DC-FW-01" || ws[0].Approver != "CISO" ||
		!ws[0].ExpiresAt.Equal(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)) || !strings.Contains(ws[0].CreatedBy, "admin") {
		t.Fatalf("stored waivers = %+v, %v", ws, err)
	}
	if l := e.audit("waiver.add"); len(l) != 1 || !strings.Contains(l[0].Detail, ws[0].ID) {
		t.Errorf("audit waiver.add = %+v", l)
	}
	if page := adm.get("/devices/" + webtest.Alice + "?done=waiver"); !strings.Contains(page.body, "Waiver granted") ||
		!strings.Contains(page.body, "approved by CISO: firewall replaced next sprint") {
		t.Error("the device page does not confirm the waiver or show it on the control")
	}
	for _, tt := range []struct {
		name   string
		change func(url.Values)
		code   int
	}{
		{"unknown control", func(v url.Values) { v.Set("control_id", "NOPE-1") }, http.StatusBadRequest},
		{"no reason", func(v url.Values) { v.Set("reason", " ") }, http.StatusBadRequest},
		{"no approver", func(v url.Values) { v.Del("approver") }, http.StatusBadRequest},
		{"bad date", func(v url.Values) { v.Set("expires", "soon") }, http.StatusBadRequest},
		{"more than a year", func(v url.Values) { v.Set("expires", "2028-01-01") }, http.StatusBadRequest},
		{"in the past", func(v url.Values) { v.Set("expires", "2026-01-01") }, http.StatusBadRequest},
		{"unknown device", func(v url.Values) { v.Set("device_id", "dev_nobody") }, http.StatusNotFound},
		{"reason too long", func(v url.Values) { v.Set("reason", strings.Repeat("x", 600)) }, http.StatusBadRequest},
	} {
		f := form(csrf)
		tt.change(f)
		if r := adm.post("/admin/waiver", f); r.code != tt.code {
			t.Errorf("%s: %d, want %d", tt.name, r.code, tt.code)
		}
	}
}

// TestGroupFilter: the device list filters by the policy's device groups.
func TestGroupFilter(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	for _, tc := range []struct {
		group      string
		code       int
		want, not_ []string
	}{
		{"laptops", http.StatusOK, []string{"laptop-alice", "macbook-bob"}, []string{"desk-carol"}},
		{"desktops", http.StatusOK, []string{"desk-carol"}, []string{"laptop-alice", "macbook-bob"}},
		{"servers", http.StatusBadRequest, []string{"no group"}, nil},
	} {
		r := b.get("/devices?group=" + tc.group)
		if r.code != tc.code {
			t.Errorf("group %s: %d, want %d", tc.group, r.code, tc.code)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("group %s: page lacks %q", tc.group, w)
			}
		}
		for _, n := range tc.not_ {
			if strings.Contains(r.body, ">"+n+"<") {
				t.Errorf("group %s: page lists %q", tc.group, n)
			}
		}
	}
}

// TestPeriodPatchSLA: the period page carries the security-update SLA.
func TestPeriodPatchSLA(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	r := b.get("/period?from=2026-03-01&to=2026-03-31")
	if r.code != http.StatusOK || !strings.Contains(r.body, `id="patch-sla"`) || !strings.Contains(r.body, "Security updates applied within 14 days") {
		t.Errorf("period page: %d, no patch SLA section", r.code)
	}
}

// TestCredentialActions: admins revoke a device (with a reason), an
// enrollment secret and a token from the web, each audited; an auditor sees
// the credentials page but every revocation is refused (403, audited).
func TestCredentialActions(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	if err := e.st.CreateEnrollSecret(ctx, store.EnrollSecret{ID: "sec_web1", Hash: []byte("h1"), Label: "jamf-2026", CreatedAt: webtest.Now}); err != nil {
		t.Fatal(err)
	}
	aud := e.browser()
	acsrf := aud.login(e.fleet.AuditorToken)
	if r := aud.get("/credentials"); r.code != 200 || !strings.Contains(r.body, "jamf-2026") || !strings.Contains(r.body, "external-auditor") {
		t.Fatalf("auditor GET /credentials = %d\n%s", r.code, r.body)
	}
	for _, tt := range []struct {
		path string
		form url.Values
	}{
		{"/admin/device-revoke", url.Values{"device_id": {webtest.Alice}, "reason": {"stolen"}}},
		{"/admin/secret-revoke", url.Values{"id": {"sec_web1"}}},
		{"/admin/token-revoke", url.Values{"id": {"tok_x"}}},
	} {
		tt.form.Set("csrf", acsrf)
		if r := aud.post(tt.path, tt.form); r.code != http.StatusForbidden {
			t.Errorf("auditor POST %s = %d, want 403", tt.path, r.code)
		}
	}
	if n := len(e.audit("device-revoke.denied")) + len(e.audit("secret-revoke.denied")) + len(e.audit("token-revoke.denied")); n != 3 {
		t.Errorf("%d refused revocations audited, want 3", n)
	}

	adm := e.browser()
	csrf := adm.login(e.fleet.AdminToken)
	if r := adm.post("/admin/device-revoke", url.Values{"csrf": {csrf}, "device_id": {webtest.Alice}}); r.code != http.StatusBadRequest || !strings.Contains(r.body, "reason is required") {
		t.Errorf("revoke without a reason = %d\n%s", r.code, r.body)
	}
	r := adm.post("/admin/device-revoke", url.Values{"csrf": {csrf}, "device_id": {webtest.Alice}, "kind": {"retire"}, "reason": {"returned to the vendor"}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("admin revoke = %d\n%s", r.code, r.body)
	}
	if page := adm.get(r.header.Get("Location")); !strings.Contains(page.body, "Credentials cut") || !strings.Contains(page.body, "retired on") {
		t.Errorf("device page after retiring does not say so:\n%s", page.body)
	}
	if d, _ := e.st.Device(ctx, webtest.Alice); d.RevokedAt == nil || !d.Retired || d.RevokeReason != "returned to the vendor" {
		t.Errorf("device after web retire: %+v", d)
	}
	if r := adm.post("/admin/secret-revoke", url.Values{"csrf": {csrf}, "id": {"sec_web1"}}); r.code != http.StatusSeeOther {
		t.Errorf("admin secret revoke = %d\n%s", r.code, r.body)
	}
	if _, err := e.st.UseEnrollSecret(ctx, []byte("h1"), webtest.Now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the revoked secret still enrolls: %v", err)
	}
	for _, action := range []string{"device.retire", "secret.revoke"} {
		if l := e.audit(action); len(l) != 1 || !strings.Contains(l[0].Actor, "admin") {
			t.Errorf("audit %s = %+v", action, l)
		}
	}
}

// TestFailedLoginsThrottled: after 10 failed logins in 10 minutes, every
// attempt from that address (even with a good token) is answered 429 with
// Retry-After; the failures are audited, the throttling once, and the
// attempts after it not at all; the bearer API is throttled the same way;
// the window's end lifts it.
func TestFailedLoginsThrottled(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	page := b.get("/login")
	csrf := csrfOf(t, page.body)
	for i := range maxFailuresForTest {
		r := b.post("/login", url.Values{"csrf": {csrf}, "token": {"evw1_wrong"}})
		if r.code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, r.code)
		}
		csrf = csrfOf(t, r.body) // the form is renewed with each answer
	}
	for range 20 {
		r := b.post("/login", url.Values{"csrf": {csrf}, "token": {e.fleet.AdminToken}})
		if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "Too many failed attempts") {
			t.Fatalf("after the limit: %d, Retry-After %q", r.code, r.header.Get("Retry-After"))
		}
	}
	if n, m := len(e.audit("login.failed")), len(e.audit("login.throttled")); n != maxFailuresForTest || m != 1 {
		t.Errorf("audit: %d login.failed (want %d), %d login.throttled (want 1)", n, maxFailuresForTest, m)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/fleet", nil)
	req.Header.Set("Authorization", "Bearer "+e.fleet.AuditorToken)
	if r := b.do(req); r.code != http.StatusTooManyRequests {
		t.Errorf("bearer API from the throttled address: %d, want 429", r.code)
	}
	e.clock.add(11 * time.Minute)
	b.login(e.fleet.AdminToken)
}

const maxFailuresForTest = 10
