package store

import (
	"context"
	"time"
)

// Web is what the web UI and HTTP API need: role tokens, login sessions and
// the audit log (README: For auditors). Tokens and sessions are stored only as
// SHA-256 hashes of their secrets.
type Web interface {
	// CreateToken stores a new role token.
	CreateToken(ctx context.Context, t Token) error
	// TokenByHash returns the token with this hash: ErrNotFound when
	// unknown or revoked, ErrExpired when past its expiry.
	TokenByHash(ctx context.Context, hash []byte, now time.Time) (Token, error)
	// Tokens returns every token, newest first.
	Tokens(ctx context.Context) ([]Token, error)
	// RevokeToken revokes a token and ends its sessions; ErrNotFound when
	// there is no such token.
	RevokeToken(ctx context.Context, id string, at time.Time) error

	// CreateSession stores a login session and deletes expired ones.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with this hash, with its token's role
	// and label: ErrNotFound when unknown, expired, or when its token was
	// revoked or has expired.
	Session(ctx context.Context, hash []byte, now time.Time) (Session, error)
	// DeleteSession ends a session (logout); deleting an unknown session
	// is not an error.
	DeleteSession(ctx context.Context, hash []byte) error

	// AddAudit appends an entry to the audit log and returns its id.
	AddAudit(ctx context.Context, e AuditEntry) (int64, error)
	// AuditLog returns up to limit entries, newest first.
	AuditLog(ctx context.Context, limit int) ([]AuditEntry, error)
	// AuditQuery returns the entries q selects, newest first, at most
	// q.Limit (at most MaxAuditPage; 0 means MaxAuditPage).
	AuditQuery(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
}

// MaxAuditPage bounds one AuditQuery.
const MaxAuditPage = 1000

// AuditQuery selects audit entries; every field set must match.
type AuditQuery struct {
	// Action matches the action and its outcomes: "tpm-change" selects
	// "tpm-change" and "tpm-change.denied".
	Action string
	// Actor matches actors containing it, ignoring case (ASCII case on
	// SQLite).
	Actor string
	// From and To bound the entries' time, [From, To); zero is open.
	From, To time.Time
	// BeforeID pages: entries older than that id (0: from the newest).
	BeforeID int64
	Limit    int
}

// Web roles (README: For auditors).
const (
	RoleAdmin   = "admin"   // enroll, policy, exceptions
	RoleAuditor = "auditor" // read-only, exports
)

// Token is a hashed web/API role token.
type Token struct {
	ID        string
	Hash      []byte // SHA-256 of the token
	Role      string // RoleAdmin or RoleAuditor
	Label     string
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// Session is a web login: the browser holds the secret, the store its hash.
type Session struct {
	Hash      []byte // SHA-256 of the session secret
	TokenID   string
	CreatedAt time.Time
	ExpiresAt time.Time
	// Role and Label are the token's, filled in by Session.
	Role  string
	Label string
}

// AuditEntry is one line of the audit log: who did (or tried) what.
type AuditEntry struct {
	ID     int64
	Time   time.Time
	Actor  string // e.g. "tok_1a2b3c (alice)" or "anonymous 192.0.2.1"
	Action string // e.g. "login", "login.failed", "tpm-change", "tpm-change.denied"
	Detail string
}
