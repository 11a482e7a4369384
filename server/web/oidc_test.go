package web_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
	"github.com/evident-dev/evident/server/web/webtest"
)

func TestOIDCConfigValidate(t *testing.T) {
	ok := func() web.OIDCConfig {
		return web.OIDCConfig{Issuer: "https://login.example.com", ClientID: "evident", RedirectURL: "https://evident.example.com/oidc/callback", AdminGroups: []string{"it"}}
	}
	for _, tt := range []struct {
		name string
		mod  func(*web.OIDCConfig)
		want string
	}{
		{"valid", func(*web.OIDCConfig) {}, ""},
		{"auditors only", func(c *web.OIDCConfig) { c.AdminGroups, c.AuditorGroups = nil, []string{"audit"} }, ""},
		{"no issuer", func(c *web.OIDCConfig) { c.Issuer = "" }, "issuer"},
		{"issuer not a URL", func(c *web.OIDCConfig) { c.Issuer = "login.example.com" }, "issuer"},
		{"no client", func(c *web.OIDCConfig) { c.ClientID = "" }, "client_id"},
		{"http issuer", func(c *web.OIDCConfig) { c.Issuer = "http://login.example.com" }, "http only on loopback"},
		{"http issuer on loopback", func(c *web.OIDCConfig) { c.Issuer = "http://127.0.0.1:9000" }, ""},
		{"http localhost", func(c *web.OIDCConfig) {
			c.Issuer, c.RedirectURL = "http://localhost:9000/", "http://localhost:8080/oidc/callback"
		}, ""},
		{"http callback", func(c *web.OIDCConfig) { c.RedirectURL = "http://evident.example.com/oidc/callback" }, "http only on loopback"},
		{"wrong callback path", func(c *web.OIDCConfig) { c.RedirectURL = "https://evident.example.com/callback" }, "/oidc/callback"},
		{"no groups", func(c *web.OIDCConfig) { c.AdminGroups = nil }, "nobody could log in"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mod(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if err == nil && (c.GroupsClaim != "groups" || c.Label == "" || len(c.Scopes) == 0 || c.HTTPClient == nil) {
				t.Errorf("defaults not filled: %+v", c)
			}
		})
	}
}

// TestSSORefusals: the callback refuses what did not start in this
// browser, and what the provider refused, audited; a provider that is down
// leaves token login working; without OIDC there is no SSO at all.
func TestSSORefusals(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := webtest.Seed(t, st)
	// A provider that is down: a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	with, err := web.New(web.Config{Store: st, Policy: f.Policy, OIDC: &web.OIDCConfig{Issuer: down, ClientID: "c",
		RedirectURL: "http://127.0.0.1/oidc/callback", AdminGroups: []string{"it"}, Label: "Acme SSO"}})
	if err != nil {
		t.Fatal(err)
	}
	without, err := web.New(web.Config{Store: st, Policy: f.Policy})
	if err != nil {
		t.Fatal(err)
	}
	get := func(h http.Handler, path string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	for _, tt := range []struct {
		name   string
		h      http.Handler
		path   string
		code   int
		body   string
		action string // audited
	}{
		{"login page offers SSO", with, "/login", 200, "Sign in with Acme SSO", ""},
		{"login page without SSO", without, "/login", 200, "Paste the token", ""},
		{"no SSO configured", without, "/oidc/login", 404, "not configured", ""},
		{"no SSO callback", without, "/oidc/callback?code=x&state=y", 404, "not configured", ""},
		{"provider down", with, "/oidc/login", 502, "cannot be reached", ""},
		{"state not from this browser", with, "/oidc/callback?code=x&state=y", 403, "did not start here", "login.denied"},
		{"provider refused", with, "/oidc/callback?error=access_denied&state=y", 401, "refused or cancelled the login (access_denied)", "login.failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := st.AuditQuery(t.Context(), store.AuditQuery{Action: tt.action, Limit: 100})
			code, body := get(tt.h, tt.path)
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("GET %s = %d, want %d with %q:\n%s", tt.path, code, tt.code, tt.body, body)
			}
			if tt.action == "" {
				return
			}
			after, _ := st.AuditQuery(t.Context(), store.AuditQuery{Action: tt.action, Limit: 100})
			if len(after) != len(before)+1 || !strings.Contains(after[0].Detail, "single sign-on") {
				t.Errorf("audit %s: %d entries after, %d before: %+v", tt.action, len(after), len(before), after)
			}
		})
	}
}
