// Package web is the auditor-facing web UI and read-only JSON API
// (README: For auditors): server-rendered html/template pages (fleet posture with a
// 30-day compliance chart, filtered device list, device detail with
// per-control status timelines, the period report with CSV and JSON
// exports) and admin-only forms, behind role tokens.
//
// Authentication: a role token (admin or auditor, created with
// `evident-server token create`; only its SHA-256 is stored) is pasted once
// into the login form and exchanged for a server-side session: the browser
// holds a random secret in an HttpOnly, SameSite=Strict cookie (Secure over
// TLS), the store holds its hash, so logout and token revocation end it at
// once. Every form carries a CSRF token derived from the session secret
// (the login form a double-submit cookie), and every unsafe request must be
// same-origin (Sec-Fetch-Site / Origin). The API under /api/v1/ takes
// `Authorization: Bearer TOKEN` and is read-only. Logins, logouts and
// refused attempts go to the audit log; admin actions are done (and
// audited) by the admin service, the one the CLI uses too.
//
// No page makes an external request: styles and charts (inline SVG) are
// embedded, and the Content-Security-Policy allows only 'self'.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/evident-dev/evident/internal/throttle"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/period"
	"github.com/evident-dev/evident/server/report"
	"github.com/evident-dev/evident/server/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Limits on what a request may carry.
const (
	maxFormBytes  = 16 << 10 // a POST body
	maxQueryBytes = 2048     // a URL's raw query
	maxParamLen   = 128      // one query or form value
	maxTokenLen   = 256      // a pasted token
	maxDeviceID   = 128
	// MaxSessionTTL bounds how long a login lasts.
	MaxSessionTTL = 12 * time.Hour
	// DefaultSessionTTL is how long a login lasts unless configured.
	DefaultSessionTTL = 8 * time.Hour
	// DefaultTokenTTL is how long a token made by NewToken's callers lasts
	// by default (`evident-server token create --expires`).
	DefaultTokenTTL = 720 * time.Hour
	chartDays       = 30
)

// Cookie names.
const (
	sessionCookie = "evident_session"
	loginCookie   = "evident_login_csrf"
)

// Store is what the web UI and API use: logins and the audit log, the
// read model (report.Store), period reports and the admin service.
type Store interface {
	store.Web
	report.Store
	period.Store
	admin.Store
	EnrollSecrets(ctx context.Context) ([]store.EnrollSecret, error)
}

// Config is what the handler is built from.
type Config struct {
	Store  Store
	Policy *controls.Policy
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives errors (default: discarded).
	Log *slog.Logger
	// SessionTTL is how long a login lasts (default 8h, at most 12h).
	SessionTTL time.Duration
	// SecureCookies forces the Secure cookie attribute even on plain HTTP
	// requests (behind a TLS-terminating proxy). Requests that arrive over
	// TLS always get Secure cookies.
	SecureCookies bool
	// OIDC, when set, adds single sign-on beside token login.
	OIDC *OIDCConfig
}

// Server is the web UI and API handler.
type Server struct {
	st     Store
	adm    *admin.Service
	policy *controls.Policy
	now    func() time.Time
	log    *slog.Logger
	ttl    time.Duration
	secure bool
	pages  map[string]*template.Template
	mux    *http.ServeMux
	cop    *http.CrossOriginProtection
	// fails throttles failed logins and bearer tokens per source.
	fails *throttle.Failures
	// sso is single sign-on (nil: token login only).
	sso *ssoLogin
}

// New builds the handler.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Policy == nil {
		return nil, errors.New("web: Store and Policy are required")
	}
	s := &Server{st: cfg.Store, policy: cfg.Policy, now: cfg.Now, log: cfg.Log, ttl: cfg.SessionTTL,
		secure: cfg.SecureCookies, cop: http.NewCrossOriginProtection(), fails: &throttle.Failures{Max: maxFailures, Window: failWindow}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ttl <= 0 {
		s.ttl = DefaultSessionTTL
	}
	if s.ttl > MaxSessionTTL {
		s.ttl = MaxSessionTTL
	}
	ids := make([]string, len(cfg.Policy.Controls))
	for i, c := range cfg.Policy.Controls {
		ids[i] = c.ID
	}
	s.adm = admin.New(cfg.Store, s.now, ids)
	if cfg.OIDC != nil {
		c := *cfg.OIDC
		if err := c.Validate(); err != nil {
			return nil, err
		}
		s.sso = &ssoLogin{cfg: c}
	}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.form("", s.logout))
	m.HandleFunc("GET /oidc/login", s.ssoStart)
	m.HandleFunc("GET "+oidcCallback, s.ssoCallback)
	m.HandleFunc("GET /{$}", s.page(s.fleetPage))
	m.HandleFunc("GET /devices", s.page(s.devicesPage))
	m.HandleFunc("GET /devices/{id}", s.page(s.devicePage))
	m.HandleFunc("GET /period", s.page(s.periodPage))
	m.HandleFunc("GET /period.csv", s.page(s.periodCSV))
	m.HandleFunc("GET /period.json", s.page(s.periodJSON))
	m.HandleFunc("GET /audit", s.page(s.auditPage))
	m.HandleFunc("GET /audit.csv", s.page(s.auditCSV))
	m.HandleFunc("GET /audit.json", s.page(s.auditJSON))
	m.HandleFunc("POST /admin/tpm-change", s.form(store.RoleAdmin, s.tpmChange))
	m.HandleFunc("POST /admin/waiver", s.form(store.RoleAdmin, s.grantWaiver))
	m.HandleFunc("POST /admin/collect", s.form(store.RoleAdmin, s.collectNow))
	m.HandleFunc("POST /admin/device-revoke", s.form(store.RoleAdmin, s.revokeDevice))
	m.HandleFunc("GET /credentials", s.page(s.credentialsPage))
	m.HandleFunc("POST /admin/secret-revoke", s.form(store.RoleAdmin, s.revokeSecret))
	m.HandleFunc("POST /admin/token-revoke", s.form(store.RoleAdmin, s.revokeToken))
	m.HandleFunc("POST /api/v1/devices/{id}/collect", s.api(s.apiCollect))
	m.HandleFunc("GET /api/v1/fleet", s.api(s.apiFleet))
	m.HandleFunc("GET /api/v1/devices", s.api(s.apiDevices))
	m.HandleFunc("GET /api/v1/devices/{id}", s.api(s.apiDevice))
	m.HandleFunc("GET /api/v1/period", s.api(s.apiPeriod))
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "no such API endpoint")
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, nil, http.StatusNotFound, "Not found", "There is no page at this address.")
	})
	s.mux = m
}

// ServeHTTP implements http.Handler: security headers and bounds on every
// request, and a recovered panic is a 500, never a crash.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("web: panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v))
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	}()
	if len(r.URL.RawQuery) > maxQueryBytes || len(r.URL.Path) > 1024 {
		http.Error(w, "request URI too long", http.StatusRequestURITooLong)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// --- tokens and sessions ---

// TokenPrefix starts every web/API token, so a leaked one is recognisable.
const TokenPrefix = admin.TokenPrefix

// NewToken returns a fresh role token, its id and its hash (what the store
// keeps). Tokens are issued by the admin service; this is its NewToken.
func NewToken() (token, id string, hash []byte) { return admin.NewToken() }

// HashToken is how a token (or a session secret) is stored and looked up.
func HashToken(token string) []byte { return admin.HashToken(token) }

func randString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// user is who a request comes from.
type user struct {
	TokenID string
	Role    string
	Label   string
	secret  string // session secret (empty for API requests)
}

func (u *user) IsAdmin() bool { return u != nil && u.Role == store.RoleAdmin }

func (u *user) actor() string {
	if u.Label != "" {
		return fmt.Sprintf("%s (%s, %s)", u.TokenID, u.Label, u.Role)
	}
	return fmt.Sprintf("%s (%s)", u.TokenID, u.Role)
}

// CSRF is the session's form token: an HMAC of the session secret, which
// only the browser holding the (HttpOnly) cookie can know.
func (u *user) CSRF() string {
	if u == nil || u.secret == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(u.secret))
	m.Write([]byte("evident csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func anonymous(r *http.Request) string { return "anonymous " + sourceAddr(r) }

func (s *Server) audit(ctx context.Context, actor, action, detail string) {
	if len(detail) > 1024 {
		detail = detail[:1024]
	}
	if _, err := s.st.AddAudit(ctx, store.AuditEntry{Time: s.now().UTC(), Actor: actor, Action: action, Detail: detail}); err != nil {
		s.log.Error("web: audit log write failed", "action", action, "actor", actor, "err", err)
	}
}

// session returns the logged-in user, or nil.
func (s *Server) session(r *http.Request) *user {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil
	}
	se, err := s.st.Session(r.Context(), HashToken(c.Value), s.now())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("web: session lookup failed", "err", err)
		}
		return nil
	}
	return &user{TokenID: se.TokenID, Role: se.Role, Label: se.Label, secret: c.Value}
}

func (s *Server) secureReq(r *http.Request) bool { return s.secure || r.TLS != nil }

func (s *Server) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: s.secureReq(r), SameSite: http.SameSiteStrictMode})
}

// page wraps a GET page that needs a login: without one the browser is sent
// to the login form.
func (s *Server) page(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := s.session(r)
		if u == nil {
			next := r.URL.Path
			if r.URL.RawQuery != "" {
				next += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, "/login?next="+urlQueryEscape(next), http.StatusSeeOther)
			return
		}
		h(w, r, u)
	}
}

// form wraps a POST form: same origin, a session, a bounded body, the
// session's CSRF token and, when role is set, that role. Refusals of a
// logged-in user are audited.
func (s *Server) form(role string, h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := s.session(r)
		action := strings.TrimPrefix(strings.Trim(r.URL.Path, "/"), "admin/")
		if err := s.cop.Check(r); err != nil {
			actor := anonymous(r)
			if u != nil {
				actor = u.actor()
			}
			s.audit(r.Context(), actor, action+".denied", "cross-origin request refused")
			s.errorPage(w, r, u, http.StatusForbidden, "Forbidden", "Cross-origin requests are refused.")
			return
		}
		if u == nil {
			s.errorPage(w, r, nil, http.StatusUnauthorized, "Not logged in", "Log in to do this.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.formError(w, r, u, err)
			return
		}
		if !constantEq(r.PostForm.Get("csrf"), u.CSRF()) {
			s.audit(r.Context(), u.actor(), action+".denied", "missing or wrong CSRF token")
			s.errorPage(w, r, u, http.StatusForbidden, "Forbidden", "The form's CSRF token is missing or wrong: reload the page and try again.")
			return
		}
		if role != "" && u.Role != role {
			s.audit(r.Context(), u.actor(), action+".denied", fmt.Sprintf("requires role %s; form %s", role, formSummary(r)))
			s.errorPage(w, r, u, http.StatusForbidden, "403 Forbidden",
				"This action requires the "+role+" role. The attempt has been recorded in the audit log.")
			return
		}
		h(w, r, u)
	}
}

func (s *Server) formError(w http.ResponseWriter, r *http.Request, u *user, err error) {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		s.errorPage(w, r, u, http.StatusRequestEntityTooLarge, "Request too large", "The form is too large.")
		return
	}
	s.errorPage(w, r, u, http.StatusBadRequest, "Bad request", "The form could not be read.")
}

func formSummary(r *http.Request) string {
	var parts []string
	for _, k := range []string{"device_id", "hours"} {
		if v := r.PostForm.Get(k); v != "" {
			parts = append(parts, k+"="+clip(v, maxParamLen))
		}
	}
	return strings.Join(parts, " ")
}

// clip bounds text from outside (a form value, a claim, an error code) put
// in pages and the audit log to n bytes, never splitting a character.
func clip(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

func constantEq(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// api wraps a read-only JSON endpoint: a bearer token of either role.
func (s *Server) api(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.throttled(w, r, "api", true) {
			return
		}
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		tok = strings.TrimSpace(tok)
		if !ok || tok == "" || len(tok) > maxTokenLen {
			w.Header().Set("WWW-Authenticate", `Bearer realm="evident"`)
			writeJSONError(w, http.StatusUnauthorized, "a bearer token is required")
			return
		}
		t, err := s.st.TokenByHash(r.Context(), HashToken(tok), s.now())
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) {
				s.log.Error("web: token lookup failed", "err", err)
				writeJSONError(w, http.StatusInternalServerError, "internal error")
				return
			}
			s.fails.Fail(sourceAddr(r), s.now())
			w.Header().Set("WWW-Authenticate", `Bearer realm="evident", error="invalid_token"`)
			writeJSONError(w, http.StatusUnauthorized, "invalid or expired token")
			return
		}
		h(w, r, &user{TokenID: t.ID, Role: t.Role, Label: t.Label})
	}
}

// --- login and logout ---

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if u := s.session(r); u != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, "")
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	csrf := randString(24)
	s.setCookie(w, r, loginCookie, csrf, "/login", 3600)
	next := safeNext(r.URL.Query().Get("next"))
	sso := ""
	if s.sso != nil {
		sso = s.sso.cfg.Label
	}
	s.render(w, r, code, "login.html", nil, "Log in", map[string]string{
		"CSRF": csrf, "Next": next, "Error": msg, "SSO": sso, "SSONext": "/oidc/login?next=" + urlQueryEscape(next)})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.throttled(w, r, "login", false) {
		return
	}
	if err := s.cop.Check(r); err != nil {
		if s.fails.Fail(sourceAddr(r), s.now()) {
			s.audit(r.Context(), anonymous(r), "login.denied", "cross-origin request refused")
		}
		s.errorPage(w, r, nil, http.StatusForbidden, "Forbidden", "Cross-origin requests are refused.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.formError(w, r, nil, err)
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !constantEq(c.Value, r.PostForm.Get("csrf")) {
		if s.fails.Fail(sourceAddr(r), s.now()) {
			s.audit(r.Context(), anonymous(r), "login.denied", "missing or wrong CSRF token")
		}
		s.renderLogin(w, r, http.StatusForbidden, "The form expired: please try again.")
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if tok == "" || len(tok) > maxTokenLen {
		if s.fails.Fail(sourceAddr(r), s.now()) {
			s.audit(r.Context(), anonymous(r), "login.failed", "empty or oversized token")
		}
		s.renderLogin(w, r, http.StatusUnauthorized, "Invalid or expired token.")
		return
	}
	now := s.now().UTC()
	t, err := s.st.TokenByHash(r.Context(), HashToken(tok), now)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) {
			s.log.Error("web: token lookup failed", "err", err)
			s.errorPage(w, r, nil, http.StatusInternalServerError, "Error", "The login could not be checked.")
			return
		}
		detail := "unknown or revoked token"
		if errors.Is(err, store.ErrExpired) {
			detail = "expired token " + t.ID
		}
		if s.fails.Fail(sourceAddr(r), now) {
			s.audit(r.Context(), anonymous(r), "login.failed", detail)
		}
		s.renderLogin(w, r, http.StatusUnauthorized, "Invalid or expired token.")
		return
	}
	secret := randString(32)
	exp := now.Add(s.ttl)
	if t.ExpiresAt != nil && t.ExpiresAt.Before(exp) {
		exp = *t.ExpiresAt
	}
	if err := s.st.CreateSession(r.Context(), store.Session{Hash: HashToken(secret), TokenID: t.ID, CreatedAt: now, ExpiresAt: exp}); err != nil {
		s.log.Error("web: create session failed", "err", err)
		s.errorPage(w, r, nil, http.StatusInternalServerError, "Error", "The session could not be created.")
		return
	}
	u := &user{TokenID: t.ID, Role: t.Role, Label: t.Label}
	s.audit(r.Context(), u.actor(), "login", "from "+strings.TrimPrefix(anonymous(r), "anonymous "))
	s.setCookie(w, r, loginCookie, "", "/login", -1)
	s.setCookie(w, r, sessionCookie, secret, "/", int(exp.Sub(now)/time.Second))
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, u *user) {
	if err := s.st.DeleteSession(r.Context(), HashToken(u.secret)); err != nil {
		s.log.Error("web: delete session failed", "err", err)
		s.errorPage(w, r, u, http.StatusInternalServerError, "Error", "The session could not be ended.")
		return
	}
	s.audit(r.Context(), u.actor(), "logout", "")
	s.setCookie(w, r, sessionCookie, "", "/", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if next == "" || len(next) > 512 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n\t") || strings.HasPrefix(next, "/login") {
		return "/"
	}
	return next
}
