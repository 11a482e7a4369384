package storetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

func testWeb(t *testing.T, open func(*testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	h := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	tokens := []store.Token{
		{ID: "tok_admin", Hash: h(1), Role: store.RoleAdmin, Label: "alice", CreatedAt: at(0)},
		{ID: "tok_aud", Hash: h(2), Role: store.RoleAuditor, Label: "bob", CreatedAt: at(time.Minute), ExpiresAt: ptr(at(time.Hour))},
	}
	for _, tk := range tokens {
		if err := s.CreateToken(ctx, tk); err != nil {
			t.Fatalf("CreateToken(%s): %v", tk.ID, err)
		}
	}
	if err := s.CreateToken(ctx, store.Token{ID: "tok_dup", Hash: h(1), Role: store.RoleAdmin, CreatedAt: at(0)}); err == nil {
		t.Errorf("CreateToken with a duplicate hash succeeded")
	}
	if err := s.CreateToken(ctx, store.Token{ID: "tok_root", Hash: h(9), Role: "root", CreatedAt: at(0)}); err == nil {
		t.Errorf("CreateToken with role root succeeded")
	}

	lookups := []struct {
		name    string
		hash    []byte
		now     time.Time
		wantID  string
		wantErr error
	}{
		{"admin", h(1), at(1000 * time.Hour), "tok_admin", nil},
		{"auditor before expiry", h(2), at(59 * time.Minute), "tok_aud", nil},
		{"auditor at expiry", h(2), at(time.Hour), "", store.ErrExpired},
		{"unknown", h(3), at(0), "", store.ErrNotFound},
	}
	for _, l := range lookups {
		got, err := s.TokenByHash(ctx, l.hash, l.now)
		if !errors.Is(err, l.wantErr) {
			t.Errorf("%s: TokenByHash error = %v, want %v", l.name, err, l.wantErr)
			continue
		}
		if l.wantErr == nil && got.ID != l.wantID {
			t.Errorf("%s: TokenByHash = %s, want %s", l.name, got.ID, l.wantID)
		}
	}
	got, err := s.TokenByHash(ctx, h(2), at(0))
	if err != nil {
		t.Fatalf("TokenByHash: %v", err)
	}
	if got.Role != store.RoleAuditor || got.Label != "bob" || !got.CreatedAt.Equal(at(time.Minute)) ||
		got.ExpiresAt == nil || !got.ExpiresAt.Equal(at(time.Hour)) || got.RevokedAt != nil || !bytes.Equal(got.Hash, h(2)) {
		t.Errorf("TokenByHash round trip = %+v", got)
	}
	all, err := s.Tokens(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "tok_aud" || all[1].ID != "tok_admin" {
		t.Errorf("Tokens = %+v, %v; want tok_aud, tok_admin", all, err)
	}

	// Sessions carry their token's role and die with it.
	sess := []store.Session{
		{Hash: h(11), TokenID: "tok_admin", CreatedAt: at(0), ExpiresAt: at(8 * time.Hour)},
		{Hash: h(12), TokenID: "tok_aud", CreatedAt: at(0), ExpiresAt: at(8 * time.Hour)},
		{Hash: h(13), TokenID: "tok_admin", CreatedAt: at(0), ExpiresAt: at(8 * time.Hour)},
	}
	for _, se := range sess {
		if err := s.CreateSession(ctx, se); err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
	}
	if err := s.CreateSession(ctx, store.Session{Hash: h(14), TokenID: "tok_nope", CreatedAt: at(0), ExpiresAt: at(time.Hour)}); err == nil {
		t.Errorf("CreateSession for an unknown token succeeded")
	}
	se, err := s.Session(ctx, h(11), at(time.Hour))
	if err != nil || se.TokenID != "tok_admin" || se.Role != store.RoleAdmin || se.Label != "alice" || !se.ExpiresAt.Equal(at(8*time.Hour)) {
		t.Errorf("Session = %+v, %v", se, err)
	}
	sessLookups := []struct {
		name string
		hash []byte
		now  time.Time
		ok   bool
	}{
		{"auditor session before token expiry", h(12), at(30 * time.Minute), true},
		{"auditor session after token expiry", h(12), at(2 * time.Hour), false},
		{"admin session at its expiry", h(11), at(8 * time.Hour), false},
		{"unknown session", h(15), at(0), false},
	}
	for _, l := range sessLookups {
		_, err := s.Session(ctx, l.hash, l.now)
		if l.ok && err != nil {
			t.Errorf("%s: Session: %v", l.name, err)
		}
		if !l.ok && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: Session error = %v, want ErrNotFound", l.name, err)
		}
	}
	// Logout.
	if err := s.DeleteSession(ctx, h(11)); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	if _, err := s.Session(ctx, h(11), at(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session after DeleteSession: %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, h(99)); err != nil {
		t.Errorf("DeleteSession(unknown): %v", err)
	}
	// Revocation ends the token and its sessions.
	if err := s.RevokeToken(ctx, "tok_admin", at(2*time.Hour)); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if err := s.RevokeToken(ctx, "tok_nope", at(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.TokenByHash(ctx, h(1), at(3*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenByHash after revoke = %v, want ErrNotFound", err)
	}
	if _, err := s.Session(ctx, h(13), at(3*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session of a revoked token = %v, want ErrNotFound", err)
	}

	// Audit log: append-only, newest first, bounded by limit.
	entries := []store.AuditEntry{
		{Time: at(0), Actor: "tok_admin (alice)", Action: "login"},
		{Time: at(time.Minute), Actor: "tok_aud (bob)", Action: "tpm-change.denied", Detail: "device=dev_1"},
		{Time: at(2 * time.Minute), Actor: "tok_admin (alice)", Action: "logout"},
	}
	var lastID int64
	for _, e := range entries {
		id, err := s.AddAudit(ctx, e)
		if err != nil {
			t.Fatalf("AddAudit: %v", err)
		}
		if id <= lastID {
			t.Errorf("AddAudit id %d not after %d", id, lastID)
		}
		lastID = id
	}
	log, err := s.AuditLog(ctx, 2)
	if err != nil {
		t.Fatalf("AuditLog: %v", err)
	}
	if len(log) != 2 || log[0].Action != "logout" || log[1].Action != "tpm-change.denied" ||
		log[1].Detail != "device=dev_1" || log[1].Actor != "tok_aud (bob)" || !log[1].Time.Equal(at(time.Minute)) {
		t.Errorf("AuditLog(2) = %+v", log)
	}
	if log, err := s.AuditLog(ctx, 100); err != nil || len(log) != 3 {
		t.Errorf("AuditLog(100) = %d entries, %v; want 3", len(log), err)
	}

	// Filtered and paged: a family of actions, an actor's substring in
	// any ASCII case with LIKE's wildcards taken literally, a time range,
	// and pages by id.
	for _, e := range []store.AuditEntry{
		{Time: at(3 * time.Minute), Actor: "tok_admin (alice)", Action: "tpm-change", Detail: "device=dev_1"},
		{Time: at(4 * time.Minute), Actor: "tok_x (100%_sure)", Action: "tpm-changes"},
		{Time: at(5 * time.Minute), Actor: "anonymous 192.0.2.1", Action: "login.failed"},
		{Time: at(6 * time.Minute), Actor: "tok_u (Ölaf)", Action: "logout"},
	} {
		if _, err := s.AddAudit(ctx, e); err != nil {
			t.Fatalf("AddAudit: %v", err)
		}
	}
	actions := func(es []store.AuditEntry) string {
		var out []string
		for _, e := range es {
			out = append(out, e.Action)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name string
		q    store.AuditQuery
		want string
	}{
		{"all", store.AuditQuery{}, "logout login.failed tpm-changes tpm-change logout tpm-change.denied login"},
		{"actor beyond ASCII, as written", store.AuditQuery{Actor: "Ölaf"}, "logout"},
		{"action family", store.AuditQuery{Action: "tpm-change"}, "tpm-change tpm-change.denied"},
		{"exact outcome", store.AuditQuery{Action: "tpm-change.denied"}, "tpm-change.denied"},
		{"login family", store.AuditQuery{Action: "login"}, "login.failed login"},
		{"actor, any case", store.AuditQuery{Actor: "ALICE"}, "tpm-change logout login"},
		{"actor with wildcards taken literally", store.AuditQuery{Actor: "0%_s"}, "tpm-changes"},
		{"an underscore is not any character", store.AuditQuery{Actor: "_"}, "logout tpm-changes tpm-change logout tpm-change.denied login"},
		{"time range", store.AuditQuery{From: at(time.Minute), To: at(4 * time.Minute)}, "tpm-change logout tpm-change.denied"},
		{"first page", store.AuditQuery{Limit: 2}, "logout login.failed"},
		{"actor and action", store.AuditQuery{Actor: "bob", Action: "tpm-change"}, "tpm-change.denied"},
		{"nothing", store.AuditQuery{Actor: "mallory"}, ""},
	} {
		got, err := s.AuditQuery(ctx, tc.q)
		if err != nil {
			t.Fatalf("AuditQuery %s: %v", tc.name, err)
		}
		if a := actions(got); a != tc.want {
			t.Errorf("AuditQuery %s = %q, want %q", tc.name, a, tc.want)
		}
	}
	var paged []store.AuditEntry
	q := store.AuditQuery{Limit: 4}
	for range 5 {
		page, err := s.AuditQuery(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		q.BeforeID = page[len(page)-1].ID
	}
	if a := actions(paged); a != "logout login.failed tpm-changes tpm-change logout tpm-change.denied login" {
		t.Errorf("paged by 4: %q, want every entry once, newest first", a)
	}
}
