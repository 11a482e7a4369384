package webui

import (
	"context"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/text/language"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
	"github.com/evident-dev/evident/server/web/webtest"
)

// people is the provider's user directory: each user's groups are what
// the provider asserts in its "groups" claim.
type people map[string]*storage.User

func (p people) GetUserByID(id string) *storage.User { return p[id] }
func (p people) GetUserByUsername(name string) *storage.User {
	for _, u := range p {
		if u.Username == name {
			return u
		}
	}
	return nil
}
func (p people) ExampleClientID() string { return "service" }

// groupsStorage is ZITADEL's example provider storage plus a groups claim
// on the userinfo endpoint (where many real providers put it, and where
// Evident looks when the ID token has none).
type groupsStorage struct {
	*storage.Storage
	groups map[string][]string
}

func (g *groupsStorage) SetUserinfoFromToken(ctx context.Context, ui *zoidc.UserInfo, tokenID, subject, origin string) error {
	if err := g.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	ui.AppendClaims("groups", g.groups[ui.Subject])
	return nil
}

// TestSingleSignOnInBrowser: OpenID Connect login end to end in headless
// Chromium against a real OpenID provider (ZITADEL's op package with its
// example login UI, started by the test on another site: localhost, where
// Evident is on 127.0.0.1). Groups map to roles: an admin, an auditor, and
// a user in no mapped group who is refused, each audited.
func TestSingleSignOnInBrowser(t *testing.T) {
	exe := chromium(t)
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fleet := webtest.Seed(t, st)

	evLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	evURL := "http://" + evLn.Addr().String()
	issuer := "http://localhost:" + strings.TrimPrefix(idpLn.Addr().String(), "127.0.0.1:") + "/"

	storage.RegisterClients(storage.WebClient("evident-web", "client-secret-0123456789", evURL+"/oidc/callback"))
	users := people{
		"u-alice": {ID: "u-alice", Username: "alice", Password: "alice-pass-1", FirstName: "Alice", LastName: "Admin", Email: "alice@example.com", EmailVerified: true, PreferredLanguage: language.English},
		"u-bob":   {ID: "u-bob", Username: "bob", Password: "bob-pass-1", FirstName: "Bob", LastName: "Auditor", Email: "bob@audit.example", EmailVerified: true, PreferredLanguage: language.English},
		"u-eve":   {ID: "u-eve", Username: "eve", Password: "eve-pass-1", FirstName: "Eve", LastName: "Staff", Email: "eve@example.com", EmailVerified: true, PreferredLanguage: language.English},
	}
	gs := &groupsStorage{Storage: storage.NewStorage(users), groups: map[string][]string{
		"u-alice": {"staff", "evident-admins"},
		"u-bob":   {"auditors-2026"},
		"u-eve":   {"staff"},
	}}
	idp := httptest.NewUnstartedServer(exampleop.SetupServer(issuer, gs, nil, false))
	idp.Listener.Close()
	idp.Listener = idpLn
	idp.Start()
	defer idp.Close()

	h, err := web.New(web.Config{Store: st, Policy: fleet.Policy, Now: func() time.Time { return webtest.Now }, OIDC: &web.OIDCConfig{
		Issuer: issuer, ClientID: "evident-web", ClientSecret: "client-secret-0123456789", RedirectURL: evURL + "/oidc/callback",
		AdminGroups: []string{"evident-admins"}, AuditorGroups: []string{"auditors-2026"}, Label: "Example IdP",
	}})
	if err != nil {
		t.Fatal(err)
	}
	ev := httptest.NewUnstartedServer(h)
	ev.Listener.Close()
	ev.Listener = evLn
	ev.Start()
	defer ev.Close()

	login := func(name, password string) *ui {
		t.Helper()
		bctx := newBrowser(t, exe, time.Minute)
		u := &ui{t: t, ctx: bctx, url: ev.URL, dir: t.ArtifactDir()}
		u.do("open Evident", chromedp.Navigate(evURL+"/devices"), chromedp.WaitVisible(chromedp.ID("sso")))
		u.wantText("login", "Sign in with Example IdP", "Or paste a token")
		u.do("sign in at the provider as "+name,
			chromedp.Click(chromedp.ID("sso")),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), name),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		)
		return u
	}

	// Alice (evident-admins): an admin, back on the page she asked for.
	alice := login("alice", "alice-pass-1")
	alice.do("reach the device list", chromedp.WaitVisible(chromedp.ID("devices")))
	alice.wantText("devices (alice)", "admin", "sso alice@example.com")
	alice.screenshot("sso-01-admin")

	// Bob (auditors-2026): an auditor, who is shown no admin form.
	bob := login("bob", "bob-pass-1")
	bob.do("reach the device list", chromedp.WaitVisible(chromedp.ID("devices")))
	bob.wantText("devices (bob)", "auditor", "sso bob@audit.example")
	bob.do("open a device", chromedp.Navigate(evURL+"/devices/"+webtest.Alice), chromedp.WaitVisible(chromedp.ID("device-controls")))
	if n, err := chromedp.Run(bob.ctx, chromedp.Evaluate[int](`document.querySelectorAll("form[action^='/admin/']").length`)); err != nil || n != 0 {
		t.Errorf("the auditor's device page has %d admin forms (%v)", n, err)
	}

	// Eve (staff only): refused, told why, and no session.
	eve := login("eve", "eve-pass-1")
	eve.do("come back refused", chromedp.WaitVisible(chromedp.ID("token")))
	eve.wantText("login (eve)", "eve@example.com", "not in a group allowed to use Evident")
	eve.screenshot("sso-02-refused")
	eve.do("try a page", chromedp.Navigate(evURL+"/devices"), chromedp.WaitVisible(chromedp.ID("sso")))

	log, err := st.AuditLog(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var logins, denied []string
	for _, e := range log {
		switch e.Action {
		case "login":
			logins = append(logins, e.Actor+" | "+e.Detail)
		case "login.denied":
			denied = append(denied, e.Detail)
		}
	}
	joined := strings.Join(logins, "\n")
	for _, want := range []string{"sso alice@example.com, admin", "sso bob@audit.example, auditor", "single sign-on, issuer " + issuer + ", subject u-alice"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit log logins lack %q:\n%s", want, joined)
		}
	}
	if len(logins) != 2 || len(denied) != 1 || !strings.Contains(denied[0], "eve@example.com") || !strings.Contains(denied[0], "staff") {
		t.Errorf("audit: logins %q, denied %q; want alice and bob in, eve refused with her groups", logins, denied)
	}
	// Each login is a token of its own, revocable, with the session's expiry.
	toks, err := st.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, tk := range toks {
		if strings.HasPrefix(tk.Label, "sso ") {
			roles[tk.Label] = tk.Role
			if tk.ExpiresAt == nil {
				t.Errorf("sso token %s never expires", tk.ID)
			}
		}
	}
	if roles["sso alice@example.com"] != store.RoleAdmin || roles["sso bob@audit.example"] != store.RoleAuditor || len(roles) != 2 {
		t.Errorf("sso tokens %v", roles)
	}
}
