package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/enrolltoken"
	"github.com/evident-dev/evident/server/store"
)

// TokenPrefix starts every web/API token, so a leaked one is recognisable.
const TokenPrefix = "evw1_"

// NewToken returns a fresh role token, its id and its hash (what the store
// keeps).
func NewToken() (token, id string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, newID("tok_"), HashToken(token)
}

// HashToken is how a token is stored and looked up.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// TokenRequest asks for a web/API role token.
type TokenRequest struct {
	Role  string // store.RoleAdmin or store.RoleAuditor
	Label string // who or what it is for, shown in the audit log
	// TTL is how long it works; 0 is forever.
	TTL time.Duration
}

func expiry(now time.Time, ttl time.Duration) *time.Time {
	if ttl <= 0 {
		return nil
	}
	t := now.Add(ttl)
	return &t
}

func expiryText(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return rfc3339(*t)
}

// CreateToken makes a role token: the token itself (shown once: only its
// hash is stored) and its record.
func (s *Service) CreateToken(ctx context.Context, actor string, r TokenRequest) (string, store.Token, error) {
	if err := checkActor(actor); err != nil {
		return "", store.Token{}, err
	}
	r.Label = strings.TrimSpace(r.Label)
	var err error
	switch {
	case r.Role != store.RoleAuditor && r.Role != store.RoleAdmin:
		err = refuse("the role must be %s or %s", store.RoleAuditor, store.RoleAdmin)
	case r.TTL < 0:
		err = refuse("the expiry must not be negative")
	default:
		err = checkLen("label", r.Label, MaxLabel)
	}
	if err != nil {
		return "", store.Token{}, s.refused(ctx, actor, ActionTokenCreate, detail("role", clip(r.Role, MaxID), "label", r.Label, "expires", r.TTL.String()), err)
	}
	now := s.now().UTC()
	tok, id, hash := NewToken()
	rec := store.Token{ID: id, Hash: hash, Role: r.Role, Label: r.Label, CreatedAt: now, ExpiresAt: expiry(now, r.TTL)}
	if err := s.st.CreateToken(ctx, rec); err != nil {
		return "", store.Token{}, err
	}
	return tok, rec, s.audit(ctx, actor, ActionTokenCreate, detail("id", id, "role", r.Role, "label", r.Label, "expires", expiryText(rec.ExpiresAt)))
}

// RevokeToken revokes a token and ends its web sessions.
func (s *Service) RevokeToken(ctx context.Context, actor, id string) error {
	return s.revokeByID(ctx, actor, ActionTokenRevoke, "token", id, s.st.RevokeToken)
}

// revokeByID revokes the thing (a token, a secret) of this id, audited as
// action.
func (s *Service) revokeByID(ctx context.Context, actor, action, what, id string, revoke func(context.Context, string, time.Time) error) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	id = strings.TrimSpace(id)
	var err error
	switch {
	case id == "":
		err = refuse("a %s id is required", what)
	case len(id) > MaxID:
		err = refuse("the %s id is longer than %d characters", what, MaxID)
	default:
		if err = revoke(ctx, id, s.now().UTC()); errors.Is(err, store.ErrNotFound) {
			err = notFound("no %s %q", what, id)
		}
	}
	if err != nil {
		return s.refused(ctx, actor, action, detail("id", id), err)
	}
	return s.audit(ctx, actor, action, detail("id", id))
}

// SecretRequest asks for an enrollment secret.
type SecretRequest struct {
	Label     string // a note to recognise it by
	SingleUse bool   // it enrolls one device only
	// TTL is how long it works; 0 is forever.
	TTL time.Duration
}

// CreateEnrollSecret makes an enrollment secret: the secret itself (shown
// once, in the enrollment token: only its hash is stored) and its record.
func (s *Service) CreateEnrollSecret(ctx context.Context, actor string, r SecretRequest) (string, store.EnrollSecret, error) {
	if err := checkActor(actor); err != nil {
		return "", store.EnrollSecret{}, err
	}
	r.Label = strings.TrimSpace(r.Label)
	var err error
	if r.TTL < 0 {
		err = refuse("the expiry must not be negative")
	} else {
		err = checkLen("label", r.Label, MaxLabel)
	}
	if err != nil {
		return "", store.EnrollSecret{}, s.refused(ctx, actor, ActionSecretCreate,
			detail("label", r.Label, "single_use", strconv.FormatBool(r.SingleUse), "expires", r.TTL.String()), err)
	}
	now := s.now().UTC()
	secret := enrolltoken.NewSecret()
	rec := store.EnrollSecret{ID: newID("sec_"), Hash: enrolltoken.HashSecret(secret), Label: r.Label, CreatedAt: now,
		SingleUse: r.SingleUse, ExpiresAt: expiry(now, r.TTL)}
	if err := s.st.CreateEnrollSecret(ctx, rec); err != nil {
		return "", store.EnrollSecret{}, err
	}
	return secret, rec, s.audit(ctx, actor, ActionSecretCreate, detail("id", rec.ID, "label", r.Label,
		"single_use", strconv.FormatBool(r.SingleUse), "expires", expiryText(rec.ExpiresAt)))
}

// RevokeSecret revokes an enrollment secret at once: no device enrolls with
// it from then on (devices it enrolled keep their identity). Audited.
func (s *Service) RevokeSecret(ctx context.Context, actor, id string) error {
	return s.revokeByID(ctx, actor, ActionSecretRevoke, "enrollment secret", id, s.st.RevokeEnrollSecret)
}
