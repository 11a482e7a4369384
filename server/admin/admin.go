// Package admin is the server's one admin service (README: Architecture, For auditors): every
// change an administrator makes (waivers, TPM-change allowances, web/API
// tokens, enrollment secrets, inventory imports) goes through it, from the
// command line and the web alike. It validates the input, so both front
// ends refuse the same things with the same messages, and it writes one
// audit-log entry per action with who did it: "<action>" when done,
// "<action>.denied" when refused (the suffix the web already uses for the
// requests it refuses at its door), with the reason in the detail.
//
// Actors are strings the front end builds: the web's token and role (see
// package web), or CLIActor's "cli:USER@HOST".
package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/evident-dev/evident/server/store"
)

// Bounds on what an admin action may carry.
const (
	// MaxText bounds a waiver's reason and approver.
	MaxText = 512
	// MaxLabel bounds a token's or secret's label and an inventory's
	// source note.
	MaxLabel = 200
	// MaxID bounds a device, control, waiver or token id.
	MaxID = 128
	// MaxAs bounds the name given with the CLI's --as.
	MaxAs = 64
	// MaxActor bounds an actor as stored.
	MaxActor = 256
	// MaxTPMChange bounds how long a TPM-change allowance lasts.
	MaxTPMChange = 7 * 24 * time.Hour
	// maxDetail bounds an audit entry's detail.
	maxDetail = 1024
)

// Audit actions. A refused action is audited as the action + Denied.
const (
	ActionWaiverAdd       = "waiver.add"
	ActionWaiverRevoke    = "waiver.revoke"
	ActionTPMChange       = "tpm-change"
	ActionTokenCreate     = "token.create"
	ActionTokenRevoke     = "token.revoke"
	ActionSecretCreate    = "secret.create"
	ActionSecretRevoke    = "secret.revoke"
	ActionInventoryImport = "inventory.import"
	ActionDeviceRevoke    = "device.revoke"
	ActionDeviceRetire    = "device.retire"
	ActionDeviceCollect   = "device.collect"
	Denied                = ".denied"
)

// Store is what the service needs of the store.
type Store interface {
	Device(ctx context.Context, id string) (store.Device, error)
	AllowTPMChange(ctx context.Context, deviceID string, until time.Time) error
	CreateWaiver(ctx context.Context, w store.Waiver) error
	Waiver(ctx context.Context, id string) (store.Waiver, error)
	RevokeWaiver(ctx context.Context, id string, at time.Time) error
	CreateToken(ctx context.Context, t store.Token) error
	RevokeToken(ctx context.Context, id string, at time.Time) error
	CreateEnrollSecret(ctx context.Context, s store.EnrollSecret) error
	ReplaceInventory(ctx context.Context, imp store.InventoryImport, rows []store.InventoryRow) (store.InventoryImport, error)
	AddAudit(ctx context.Context, e store.AuditEntry) (int64, error)
	RevokeDevice(ctx context.Context, deviceID string, at time.Time, reason string, retire bool) error
	RequestCollection(ctx context.Context, r store.CollectRequest) (int64, error)
	RevokeEnrollSecret(ctx context.Context, id string, at time.Time) error
}

// Service is the admin service.
type Service struct {
	st       Store
	now      func() time.Time
	controls map[string]bool
}

// New returns the service over st with the clock now. controls are the ids
// of the control pack the server scores with: a waiver for any other
// control is refused. With nil (the CLI, which does not know the running
// server's pack) any control id is accepted.
func New(st Store, now func() time.Time, controls []string) *Service {
	s := &Service{st: st, now: now}
	if s.now == nil {
		s.now = time.Now
	}
	if controls != nil {
		s.controls = map[string]bool{}
		for _, c := range controls {
			s.controls[c] = true
		}
	}
	return s
}

// Refusal is an action the service refused because of its input: a
// missing, oversized or malformed field, or an unknown device, waiver or
// token. Its message is meant to be shown as is, by every front end. It
// wraps store.ErrNotFound when the refusal is that something does not
// exist.
type Refusal struct {
	msg string
	err error
}

func (r *Refusal) Error() string { return r.msg }
func (r *Refusal) Unwrap() error { return r.err }

func refuse(format string, a ...any) *Refusal { return &Refusal{msg: fmt.Sprintf(format, a...)} }

func notFound(format string, a ...any) *Refusal {
	return &Refusal{msg: fmt.Sprintf(format, a...), err: store.ErrNotFound}
}

// ErrNotAudited is wrapped when an action was done but its audit entry
// could not be written: the action's result is returned with it. (A refusal
// that could not be audited is still only a Refusal.)
var ErrNotAudited = errors.New("done but not audited")

// CLIActor is the actor of a command-line action: "cli:USER@HOST" (the OS
// user and host), or with as "cli:AS (os user USER@HOST)". as is refused
// when longer than MaxAs or when it holds control characters or
// parentheses.
func CLIActor(as, osUser, host string) (string, error) {
	if osUser == "" {
		osUser = "unknown"
	}
	if host == "" {
		host = "unknown-host"
	}
	who := clip(osUser, MaxID) + "@" + clip(host, MaxID)
	as = strings.TrimSpace(as)
	if as == "" {
		return "cli:" + who, nil
	}
	if len(as) > MaxAs || !utf8.ValidString(as) || strings.ContainsFunc(as, func(r rune) bool {
		return unicode.IsControl(r) || r == '(' || r == ')'
	}) {
		return "", refuse("--as must be a name of at most %d characters without control characters or parentheses", MaxAs)
	}
	return "cli:" + as + " (os user " + who + ")", nil
}

func checkActor(actor string) error {
	if strings.TrimSpace(actor) == "" || len(actor) > MaxActor || strings.ContainsFunc(actor, unicode.IsControl) {
		return fmt.Errorf("admin: invalid actor %q", clip(actor, MaxActor))
	}
	return nil
}

// audit writes a done action's entry.
func (s *Service) audit(ctx context.Context, actor, action, detail string) error {
	if err := s.write(ctx, actor, action, detail); err != nil {
		return fmt.Errorf("%s %w: audit log: %w", action, ErrNotAudited, err)
	}
	return nil
}

func (s *Service) write(ctx context.Context, actor, action, detail string) error {
	if len(detail) > maxDetail {
		detail = strings.ToValidUTF8(detail[:maxDetail], "")
	}
	_, err := s.st.AddAudit(ctx, store.AuditEntry{Time: s.now().UTC(), Actor: actor, Action: action, Detail: detail})
	return err
}

// refused audits a refusal (action + Denied, the reason then the request)
// and returns err. Errors that are not refusals (the store failing) are
// returned as they are.
func (s *Service) refused(ctx context.Context, actor, action, request string, err error) error {
	rf, ok := errors.AsType[*Refusal](err)
	if !ok {
		return err
	}
	if aerr := s.write(ctx, actor, action+Denied, rf.msg+"; "+request); aerr != nil {
		// Still only a refusal: ErrNotAudited means the action was done.
		return &Refusal{msg: fmt.Sprintf("%s (the refusal was not audited: %v)", rf.msg, aerr), err: rf.err}
	}
	return err
}

// detail renders key=value pairs for an audit entry, skipping empty values.
// A value is quoted when it holds anything but letters, digits and
// -_.:@/+, so no input can forge another field or line.
func detail(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		if v == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		if strings.ContainsFunc(v, func(r rune) bool {
			return !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_.:@/+", r))
		}) {
			v = strconv.Quote(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

func clip(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// checkDevice refuses an empty, oversized or unknown device id.
func (s *Service) checkDevice(ctx context.Context, id string) error {
	if id == "" {
		return refuse("a device is required")
	}
	if len(id) > MaxID {
		return refuse("the device id is longer than %d characters", MaxID)
	}
	if _, err := s.st.Device(ctx, id); errors.Is(err, store.ErrNotFound) {
		return notFound("no device %q", id)
	} else if err != nil {
		return fmt.Errorf("reading device %s: %w", id, err)
	}
	return nil
}

func checkLen(field, v string, max int) error {
	if len(v) > max {
		return refuse("the %s is longer than %d characters", field, max)
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
