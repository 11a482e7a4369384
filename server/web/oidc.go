package web

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/store"
)

// OIDCConfig is single sign-on through an OpenID Connect provider (Okta,
// Entra ID, Google, Keycloak, ZITADEL, …): the authorization code flow with
// PKCE, state and nonce (go-oidc verifies the ID token's signature, issuer,
// audience and expiry), and the provider's groups mapped to Evident's two
// roles. A user in no mapped group is refused, and the refusal audited.
// Token login stays for automation and as a way in when the provider is
// down.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (its discovery document is
	// Issuer/.well-known/openid-configuration).
	Issuer string
	// ClientID and ClientSecret are Evident's registration at the
	// provider.
	ClientID, ClientSecret string
	// RedirectURL is this server's callback as registered at the
	// provider: the web UI's address followed by /oidc/callback.
	RedirectURL string
	// Scopes are asked beyond "openid" (default: profile, email).
	Scopes []string
	// GroupsClaim names the claim listing the user's groups (default
	// "groups"); read from the ID token, else from the userinfo endpoint.
	GroupsClaim string
	// AdminGroups and AuditorGroups map groups to roles; admin wins.
	AdminGroups, AuditorGroups []string
	// Label names the provider on the login page (default "single
	// sign-on").
	Label string
	// HTTPClient talks to the provider (default: one with a 10 s timeout).
	HTTPClient *http.Client
}

// Validate checks c and fills its defaults.
func (c *OIDCConfig) Validate() error {
	// Discovery and the signing keys come from the issuer: over plain HTTP
	// anyone on the path could swap the keys and forge an admin's ID token.
	// HTTP is for a provider on this machine only (tests, a local proxy).
	if !secureURL(c.Issuer) {
		return fmt.Errorf("oidc issuer %q: want the provider's https URL (http only on loopback)", c.Issuer)
	}
	if c.ClientID == "" {
		return errors.New("oidc: client_id is empty")
	}
	if r, err := url.Parse(c.RedirectURL); err != nil || !secureURL(c.RedirectURL) || r.Path != oidcCallback {
		return fmt.Errorf("oidc redirect_url %q: want the web UI's https address followed by %s (http only on loopback)", c.RedirectURL, oidcCallback)
	}
	if len(c.AdminGroups)+len(c.AuditorGroups) == 0 {
		return errors.New("oidc: no admin_groups or auditor_groups: nobody could log in")
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"profile", "email"}
	}
	if c.Label == "" {
		c.Label = "single sign-on"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return nil
}

// secureURL: an https URL, or an http one to a loopback host.
func secureURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		ip := net.ParseIP(h)
		return h == "localhost" || (ip != nil && ip.IsLoopback())
	}
	return false
}

const (
	oidcCallback = "/oidc/callback"
	// oidcCookie carries the flow's state, nonce, PKCE verifier and the
	// page to return to, between /oidc/login and the callback. SameSite=Lax:
	// the callback is a top-level navigation from the provider's site.
	oidcCookie   = "evident_oidc"
	oidcFlowTime = 10 * time.Minute
)

// ssoLogin is the OIDC client, its provider discovered on first use (a
// provider that is down when the server starts does not stop it).
type ssoLogin struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider
	oauth    *oauth2.Config
}

func (o *ssoLogin) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, o.cfg.HTTPClient)
}

// discover returns the provider, fetching its discovery document once.
func (o *ssoLogin) discover(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, o.oauth, nil
	}
	p, err := oidc.NewProvider(o.ctx(ctx), o.cfg.Issuer)
	if err != nil {
		return nil, nil, err
	}
	o.provider = p
	o.oauth = &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: o.cfg.RedirectURL, Scopes: append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...)}
	return p, o.oauth, nil
}

// flow is what the oidc cookie holds.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"r"`
}

func (s *Server) ssoStart(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil {
		s.errorPage(w, r, nil, http.StatusNotFound, "Not found", "Single sign-on is not configured.")
		return
	}
	if s.throttled(w, r, "login", false) {
		return
	}
	_, oc, err := s.sso.discover(r.Context())
	if err != nil {
		s.log.Error("web: the OpenID provider cannot be reached", "issuer", s.sso.cfg.Issuer, "err", err)
		s.renderLogin(w, r, http.StatusBadGateway, "The sign-in provider cannot be reached; try again later, or log in with a token.")
		return
	}
	f := flow{State: randString(24), Nonce: randString(24), Verifier: oauth2.GenerateVerifier(), Next: safeNext(r.URL.Query().Get("next"))}
	b, _ := json.Marshal(f)
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: "/oidc/",
		MaxAge: int(oidcFlowTime / time.Second), HttpOnly: true, Secure: s.secureReq(r), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, oc.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusSeeOther)
}

// ssoRefuse ends a callback on the login page, audited.
func (s *Server) ssoRefuse(w http.ResponseWriter, r *http.Request, code int, action, detail, msg string) {
	if s.fails.Fail(sourceAddr(r), s.now()) {
		s.audit(r.Context(), anonymous(r), action, "single sign-on: "+detail)
	}
	s.renderLogin(w, r, code, msg)
}

func (s *Server) ssoCallback(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil {
		s.errorPage(w, r, nil, http.StatusNotFound, "Not found", "Single sign-on is not configured.")
		return
	}
	if s.throttled(w, r, "login", false) {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/oidc/", MaxAge: -1, HttpOnly: true, Secure: s.secureReq(r), SameSite: http.SameSiteLaxMode})
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		s.ssoRefuse(w, r, http.StatusUnauthorized, "login.failed", "the provider answered "+clip(e, 64),
			"The sign-in provider refused or cancelled the login ("+clip(e, 64)+").")
		return
	}
	var f flow
	c, err := r.Cookie(oidcCookie)
	if err == nil && len(c.Value) < 1024 {
		if b, err := base64.RawURLEncoding.DecodeString(c.Value); err == nil {
			_ = json.Unmarshal(b, &f)
		}
	}
	if f.State == "" || !constantEq(f.State, q.Get("state")) {
		s.ssoRefuse(w, r, http.StatusForbidden, "login.denied", "state missing or not this browser's",
			"The sign-in expired or did not start here: please try again.")
		return
	}
	p, oc, err := s.sso.discover(r.Context())
	if err != nil {
		s.renderLogin(w, r, http.StatusBadGateway, "The sign-in provider cannot be reached; try again later, or log in with a token.")
		return
	}
	ctx := s.sso.ctx(r.Context())
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		s.log.Warn("web: the OpenID provider refused the code", "err", err)
		s.ssoRefuse(w, r, http.StatusUnauthorized, "login.failed", "code exchange refused", "The sign-in could not be completed: please try again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.Verifier(&oidc.Config{ClientID: s.sso.cfg.ClientID, Now: s.now}).Verify(ctx, raw)
	if err != nil || !constantEq(idt.Nonce, f.Nonce) {
		if err == nil {
			err = errors.New("nonce does not match")
		}
		s.log.Warn("web: ID token refused", "err", err)
		s.ssoRefuse(w, r, http.StatusUnauthorized, "login.failed", "ID token refused: "+clip(err.Error(), 200), "The sign-in could not be verified: please try again.")
		return
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		s.ssoRefuse(w, r, http.StatusUnauthorized, "login.failed", "unreadable ID token claims", "The sign-in could not be verified: please try again.")
		return
	}
	if _, ok := claims[s.sso.cfg.GroupsClaim]; !ok {
		// Many providers put groups in the userinfo answer only.
		if ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
			extra := map[string]any{}
			if ui.Claims(&extra) == nil && ui.Subject == idt.Subject {
				for k, v := range extra {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		}
	}
	// The email names the login only when the provider vouches for it.
	who := claimString(claims, "email")
	if v, ok := claims["email_verified"].(bool); ok && !v {
		who = ""
	}
	if who == "" {
		who = claimString(claims, "preferred_username")
	}
	if who == "" {
		who = idt.Subject
	}
	who = clip(who, 128)
	groups := claimStrings(claims[s.sso.cfg.GroupsClaim])
	role := ""
	switch {
	case intersects(groups, s.sso.cfg.AdminGroups):
		role = store.RoleAdmin
	case intersects(groups, s.sso.cfg.AuditorGroups):
		role = store.RoleAuditor
	}
	if role == "" {
		s.ssoRefuse(w, r, http.StatusForbidden, "login.denied",
			fmt.Sprintf("%s (subject %s) is in no group mapped to a role (groups: %s)", who, clip(idt.Subject, 128), clip(strings.Join(groups, ", "), 512)),
			"Your account ("+who+") is not in a group allowed to use Evident. Ask an administrator.")
		return
	}
	now := s.now().UTC()
	exp := now.Add(s.ttl)
	// A login is a token of its own, never shown to anyone: the credentials
	// page lists it, and revoking it ends that login at once.
	_, id, _ := admin.NewToken()
	hash := sha256.Sum256([]byte(randString(32)))
	t := store.Token{ID: id, Hash: hash[:], Role: role, Label: "sso " + who, CreatedAt: now, ExpiresAt: &exp}
	if err := s.st.CreateToken(r.Context(), t); err != nil {
		s.internalError(w, r, nil, "recording the login", err)
		return
	}
	secret := randString(32)
	if err := s.st.CreateSession(r.Context(), store.Session{Hash: HashToken(secret), TokenID: t.ID, CreatedAt: now, ExpiresAt: exp}); err != nil {
		s.internalError(w, r, nil, "creating the session", err)
		return
	}
	u := &user{TokenID: t.ID, Role: role, Label: t.Label}
	s.audit(r.Context(), u.actor(), "login", fmt.Sprintf("single sign-on, issuer %s, subject %s, from %s",
		s.sso.cfg.Issuer, clip(idt.Subject, 128), strings.TrimPrefix(anonymous(r), "anonymous ")))
	s.setCookie(w, r, sessionCookie, secret, "/", int(exp.Sub(now)/time.Second))
	// The session cookie is SameSite=Strict, so a redirect still in the
	// chain that began at the provider would arrive without it: a page of
	// this site moves on instead.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_ = continuePage.Execute(w, safeNext(f.Next))
}

var continuePage = template.Must(template.New("continue").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={{.}}">
<title>Signed in · Evident</title></head>
<body><p>Signed in. <a id="continue" href="{{.}}">Continue</a></p></body></html>
`))

func claimString(claims map[string]any, k string) string {
	s, _ := claims[k].(string)
	return s
}

// claimStrings reads a groups claim: a list of strings, or one string.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
