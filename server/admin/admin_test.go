package admin_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

var now = time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)

func newService(t *testing.T) (*admin.Service, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnrollDevice(context.Background(), store.Device{ID: "dev-1", Hostname: "laptop-1", EnrolledAt: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return admin.New(st, func() time.Time { return now }, []string{"DC-FW-01"}), st
}

func TestCLIActor(t *testing.T) {
	for _, tt := range []struct {
		as, user, host, want string
		bad                  bool
	}{
		{"", "alice", "build-01", "cli:alice@build-01", false},
		{"  ", "alice", "build-01", "cli:alice@build-01", false},
		{"Bob Smith", "alice", "build-01", "cli:Bob Smith (os user alice@build-01)", false},
		{"", "", "", "cli:unknown@unknown-host", false},
		{"eve\nadmin", "alice", "h", "", true},
		{"eve (admin)", "alice", "h", "", true},
		{strings.Repeat("x", admin.MaxAs+1), "alice", "h", "", true},
	} {
		got, err := admin.CLIActor(tt.as, tt.user, tt.host)
		if got != tt.want || (err != nil) != tt.bad {
			t.Errorf("CLIActor(%q, %q, %q) = %q, %v; want %q (error %v)", tt.as, tt.user, tt.host, got, err, tt.want, tt.bad)
		}
	}
}

// TestRefusalsAndAudit: each action audits once, done or refused; a
// refusal is a *Refusal (wrapping store.ErrNotFound for unknown things)
// and its detail cannot forge another line or field.
func TestRefusalsAndAudit(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		do       func(*admin.Service) error
		action   string
		notFound bool
		refused  bool
		detail   string
	}{
		{"tpm change", func(s *admin.Service) error { _, err := s.AllowTPMChange(ctx, "a", "dev-1", 2*time.Hour); return err },
			admin.ActionTPMChange, false, false, "device_id=dev-1 until=2026-03-31T14:00:00Z"},
		{"tpm change too long", func(s *admin.Service) error { _, err := s.AllowTPMChange(ctx, "a", "dev-1", 169*time.Hour); return err },
			admin.ActionTPMChange + admin.Denied, false, true, "at most 7 days"},
		{"tpm change unknown device", func(s *admin.Service) error { _, err := s.AllowTPMChange(ctx, "a", "dev-2", time.Hour); return err },
			admin.ActionTPMChange + admin.Denied, true, true, `no device "dev-2"; device_id=dev-2 for=1h0m0s`},
		{"waiver for a control not in the policy", func(s *admin.Service) error {
			_, err := s.AddWaiver(ctx, "a", admin.WaiverRequest{DeviceID: "dev-1", ControlID: "NOPE-1", Reason: "r", Approver: "x", Expires: "2026-04-30"})
			return err
		}, admin.ActionWaiverAdd + admin.Denied, false, true, `no control "NOPE-1" in the policy`},
		{"waiver over a year", func(s *admin.Service) error {
			_, err := s.AddWaiver(ctx, "a", admin.WaiverRequest{DeviceID: "dev-1", Reason: "r", Approver: "x", Expires: "2027-04-30"})
			return err
		}, admin.ActionWaiverAdd + admin.Denied, false, true, "more than 1 year"},
		{"waiver reason forging a field", func(s *admin.Service) error {
			_, err := s.AddWaiver(ctx, "a", admin.WaiverRequest{DeviceID: "dev-1", Reason: "ok\nwaiver=wvr_x approver=CEO", Approver: "x", Expires: "2026-04-30"})
			return err
		}, admin.ActionWaiverAdd, false, false, `reason="ok\nwaiver=wvr_x approver=CEO"`},
		{"revoke unknown waiver", func(s *admin.Service) error { _, err := s.RevokeWaiver(ctx, "a", "wvr_nope"); return err },
			admin.ActionWaiverRevoke + admin.Denied, true, true, `no waiver "wvr_nope"; waiver=wvr_nope`},
		{"revoke unknown token", func(s *admin.Service) error { return s.RevokeToken(ctx, "a", "tok_nope") },
			admin.ActionTokenRevoke + admin.Denied, true, true, `no token "tok_nope"`},
		{"token with a bad role", func(s *admin.Service) error {
			_, _, err := s.CreateToken(ctx, "a", admin.TokenRequest{Role: "root"})
			return err
		}, admin.ActionTokenCreate + admin.Denied, false, true, "the role must be auditor or admin; role=root"},
		{"secret with a long label", func(s *admin.Service) error {
			_, _, err := s.CreateEnrollSecret(ctx, "a", admin.SecretRequest{Label: strings.Repeat("x", admin.MaxLabel+1)})
			return err
		}, admin.ActionSecretCreate + admin.Denied, false, true, "the label is longer than 200 characters"},
		{"inventory that does not parse", func(s *admin.Service) error {
			_, _, err := s.ImportInventory(ctx, "a", admin.InventoryRequest{Filename: "x.csv", CSV: strings.NewReader("serial\nSN1\n\"x\n")})
			return err
		}, admin.ActionInventoryImport + admin.Denied, false, true, "line 3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, st := newService(t)
			err := tt.do(s)
			_, refused := errors.AsType[*admin.Refusal](err)
			if refused != tt.refused || (err != nil) != tt.refused || errors.Is(err, store.ErrNotFound) != tt.notFound {
				t.Errorf("error %v: refusal %v, not found %v; want %v, %v", err, refused, errors.Is(err, store.ErrNotFound), tt.refused, tt.notFound)
			}
			l, _ := st.AuditLog(ctx, 10)
			if len(l) != 1 || l[0].Action != tt.action || l[0].Actor != "a" || !strings.Contains(l[0].Detail, tt.detail) || !l[0].Time.Equal(now) {
				t.Errorf("audit log = %+v; want one %s entry containing %q", l, tt.action, tt.detail)
			}
		})
	}
}

// failingAudit is a store whose audit log cannot be written.
type failingAudit struct{ *sqlite.Store }

func (failingAudit) AddAudit(context.Context, store.AuditEntry) (int64, error) {
	return 0, errors.New("disk full")
}

// TestNotAudited: an action done without its audit entry says so, and
// still returns what it did.
func TestNotAudited(t *testing.T) {
	_, st := newService(t)
	s := admin.New(failingAudit{st}, func() time.Time { return now }, nil)
	w, err := s.AddWaiver(context.Background(), "a", admin.WaiverRequest{DeviceID: "dev-1", Reason: "r", Approver: "x", Expires: "2026-04-30"})
	if !errors.Is(err, admin.ErrNotAudited) || w.ID == "" {
		t.Fatalf("AddWaiver = %+v, %v; want the waiver and ErrNotAudited", w, err)
	}
	if _, err := st.Waiver(context.Background(), w.ID); err != nil {
		t.Errorf("waiver not stored: %v", err)
	}
	if err := s.RevokeToken(context.Background(), "", "tok_x"); err == nil || errors.Is(err, admin.ErrNotAudited) {
		t.Errorf("an empty actor = %v, want a plain error", err)
	}
}

// TestRefusalNotAudited: a refusal whose audit entry fails is still only a
// refusal (front ends must not take it for an action done).
func TestRefusalNotAudited(t *testing.T) {
	_, st := newService(t)
	s := admin.New(failingAudit{st}, func() time.Time { return now }, nil)
	_, err := s.AllowTPMChange(context.Background(), "a", "dev-nope", time.Hour)
	if _, ok := errors.AsType[*admin.Refusal](err); !ok || errors.Is(err, admin.ErrNotAudited) || !errors.Is(err, store.ErrNotFound) ||
		!strings.Contains(err.Error(), "not audited: disk full") {
		t.Errorf("refusal without audit = %v", err)
	}
}
