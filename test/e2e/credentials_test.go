package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/agent/uplink"
	"github.com/evident-dev/evident/internal/enrolltoken"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/ingest/ingesttest"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// credLab is an in-process server (real gRPC over loopback mTLS, SQLite on
// disk) whose clock the test moves, with its credential watcher running.
type credLab struct {
	st    *sqlite.Store
	srv   *ingest.Server
	addr  string
	token string

	mu  sync.Mutex
	now time.Time
}

func (l *credLab) clock() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now
}

func (l *credLab) advance(d time.Duration) {
	l.mu.Lock()
	l.now = l.now.Add(d)
	l.mu.Unlock()
}

func newCredLab(t *testing.T) *credLab {
	t.Helper()
	l := &credLab{now: time.Now()}
	var err error
	if l.st, err = sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.st.Close() })
	// The agent checks the server's certificate on the wall clock: Start
	// issues it before the server's clock moves.
	srv := ingesttest.Start(t, &ingest.Server{Store: l.st, Now: l.clock})
	l.srv, l.addr = srv.Server, srv.Addr
	secret := enrolltoken.NewSecret()
	if err := l.st.CreateEnrollSecret(context.Background(), store.EnrollSecret{ID: "sec_lab", Hash: enrolltoken.HashSecret(secret), CreatedAt: l.now}); err != nil {
		t.Fatal(err)
	}
	l.token = enrolltoken.Token{Secret: secret, CAPin: srv.CA.Fingerprint()}.String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.srv.WatchCredentials(ctx, 50*time.Millisecond) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return l
}

func (l *credLab) enroll(t *testing.T, host string) *identity.Identity {
	t.Helper()
	id, err := identity.Enroll(context.Background(), filepath.Join(t.TempDir(), "identity"), l.addr, l.token,
		&identity.HostFacts{Hostname: host, Goos: "linux"}, identity.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// deliver streams one observation with the TLS configuration conf and
// returns the server's answer: nil when it was acked.
func deliver(t *testing.T, addr string, conf *tls.Config, seq uint64) error {
	t.Helper()
	ack, err := streamOnce(t, addr, conf, seq)
	if err == nil && ack != seq {
		t.Fatalf("ack %d, want %d", ack, seq)
	}
	return err
}

// frozen is a TLS configuration presenting the identity's certificate of
// this moment, whatever renewals follow: what a copy of its files gives.
func frozen(t *testing.T, id *identity.Identity) *tls.Config {
	t.Helper()
	conf, err := id.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := conf.GetClientCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	conf.GetClientCertificate = nil
	conf.Certificates = []tls.Certificate{*c}
	return conf
}

// TestCertificateRenewal: a device renews over its own mTLS identity once
// half its certificate's lifetime has passed, with a new key; its previous
// certificate keeps working until the new one is confirmed and is refused
// from then on (a copy of the old files is useless); a key is never
// certified twice; and renewed certificates keep renewing.
func TestCertificateRenewal(t *testing.T) {
	l := newCredLab(t)
	id := l.enroll(t, "renewing")
	ctx := context.Background()
	first := frozen(t, id)
	firstExpiry := id.CertExpiry()
	if err := deliver(t, l.addr, first, 1); err != nil {
		t.Fatalf("enrolled certificate refused: %v", err)
	}

	// Too early: half the lifetime has not passed.
	l.advance(44 * 24 * time.Hour)
	if err := id.Renew(ctx, nil); status.Code(errorsCause(err)) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not due for renewal") {
		t.Fatalf("early renewal: %v, want FailedPrecondition", err)
	}
	if id.HasPendingRenewal() {
		t.Fatal("a refused renewal left a certificate to confirm")
	}
	l.advance(17 * 24 * time.Hour) // day 61: past two thirds
	if now := l.clock(); now.Before(id.RenewAt()) {
		t.Fatalf("RenewAt %s is after two thirds of the lifetime (%s)", id.RenewAt(), now)
	}
	if err := id.Renew(ctx, nil); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if !id.CertExpiry().After(firstExpiry) || id.HasPendingRenewal() {
		t.Fatalf("after renewal: expiry %s (was %s), pending %v", id.CertExpiry(), firstExpiry, id.HasPendingRenewal())
	}
	second := frozen(t, id)
	if err := deliver(t, l.addr, second, 2); err != nil {
		t.Fatalf("renewed certificate refused: %v", err)
	}
	if err := deliver(t, l.addr, first, 3); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "replaced by a renewal") {
		t.Fatalf("previous certificate after the renewal was confirmed: %v, want PermissionDenied", err)
	}
	// The files on disk are the renewed identity.
	reloaded, err := identity.Load(id.Dir())
	if err != nil || !reloaded.CertExpiry().Equal(id.CertExpiry()) {
		t.Fatalf("reloaded identity: %v, expiry %s", err, reloaded.CertExpiry())
	}
	// Renewal after renewal: the certificate issued by renewal renews too.
	for i := range 4 {
		l.advance(61 * 24 * time.Hour)
		if err := id.Renew(ctx, nil); err != nil {
			t.Fatalf("renewal %d: %v", i+2, err)
		}
		if err := deliver(t, l.addr, frozen(t, id), uint64(4+i)); err != nil {
			t.Fatalf("certificate of renewal %d refused: %v", i+2, err)
		}
	}
	// Enrollment with a key certified before is refused.
	key, err := os.ReadFile(filepath.Join(id.Dir(), "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enrollWithKey(l, key); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "certified before") {
		t.Fatalf("enrollment with a certified key: %v, want PermissionDenied", err)
	}
}

// errorsCause is the gRPC status error inside a wrapped error.
func errorsCause(err error) error {
	for e := err; e != nil; {
		if _, ok := status.FromError(e); ok {
			return e
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return err
}

// enrollWithKey sends an enrollment whose CSR is signed by the PEM key.
func enrollWithKey(l *credLab, keyPEM []byte) (*evidentv1.EnrollResponse, error) {
	k, err := parseECKey(keyPEM)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, k)
	if err != nil {
		return nil, err
	}
	tok, err := enrolltoken.Parse(l.token)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(l.addr, grpc.WithTransportCredentials(identity.PinnedCredentials(tok.CAPin)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return evidentv1.NewEnrollmentClient(conn).Enroll(ctx, &evidentv1.EnrollRequest{EnrollSecret: tok.Secret, Csr: csr, Host: &evidentv1.HostFacts{Hostname: "thief"}})
}

// TestRenewalSurvivesACrashAtEveryStep: an agent stopped at any step of a
// renewal starts again with an identity that works, and completes the
// renewal. The steps are the files a renewal leaves (identity/renew.go).
func TestRenewalSurvivesACrashAtEveryStep(t *testing.T) {
	steps := []struct {
		name string
		// crash leaves the identity directory as an agent stopped at this
		// step would (the server side done as far as the step goes).
		crash func(t *testing.T, l *credLab, id *identity.Identity)
	}{
		{"key written, request not answered", func(t *testing.T, l *credLab, id *identity.Identity) {
			writeNextKey(t, id)
		}},
		{"certificate received, not confirmed", func(t *testing.T, l *credLab, id *identity.Identity) {
			request(t, id)
		}},
		{"confirmed, not installed", func(t *testing.T, l *credLab, id *identity.Identity) {
			request(t, id)
			confirmNext(t, l, id)
		}},
		{"certificate installed, key not (renames reordered on disk)", func(t *testing.T, l *credLab, id *identity.Identity) {
			request(t, id)
			confirmNext(t, l, id)
			if err := os.Rename(filepath.Join(id.Dir(), "device.crt.next"), filepath.Join(id.Dir(), "device.crt")); err != nil {
				t.Fatal(err)
			}
		}},
		{"key installed, certificate not", func(t *testing.T, l *credLab, id *identity.Identity) {
			request(t, id)
			confirmNext(t, l, id)
			if err := os.Rename(filepath.Join(id.Dir(), "device.key.next"), filepath.Join(id.Dir(), "device.key")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			l := newCredLab(t)
			id := l.enroll(t, "crashing")
			l.advance(61 * 24 * time.Hour)
			tc.crash(t, l, id)
			// The agent starts again: it loads what is on disk and finishes
			// or redoes the renewal.
			again, err := identity.Load(id.Dir())
			if err != nil {
				t.Fatalf("identity after the crash does not load: %v", err)
			}
			if err := again.ResumeRenewal(context.Background()); err != nil {
				t.Fatalf("resuming the renewal: %v", err)
			}
			if again.HasPendingRenewal() {
				t.Fatal("a renewal is still pending after resuming it")
			}
			if now := l.clock(); !now.Before(again.RenewAt()) {
				if err := again.Renew(context.Background(), nil); err != nil {
					t.Fatalf("renewal after the crash: %v", err)
				}
			}
			if err := deliver(t, l.addr, frozen(t, again), 1); err != nil {
				t.Fatalf("identity after the crash is refused: %v", err)
			}
			if !again.CertExpiry().After(l.clock().Add(80 * 24 * time.Hour)) {
				t.Fatalf("certificate after the crash expires %s: not renewed", again.CertExpiry())
			}
		})
	}
}

func request(t *testing.T, id *identity.Identity) {
	t.Helper()
	if err := id.RequestRenewal(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

// writeNextKey leaves a next key with no certificate, as step 1 does.
func writeNextKey(t *testing.T, id *identity.Identity) {
	t.Helper()
	k, err := os.ReadFile(filepath.Join(id.Dir(), "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(id.Dir(), "device.key.next"), k, 0o600); err != nil {
		t.Fatal(err)
	}
}

// confirmNext confirms the next pair on disk with the server, as step 3
// does, without installing it.
func confirmNext(t *testing.T, l *credLab, id *identity.Identity) {
	t.Helper()
	next, err := tls.LoadX509KeyPair(filepath.Join(id.Dir(), "device.crt.next"), filepath.Join(id.Dir(), "device.key.next"))
	if err != nil {
		t.Fatal(err)
	}
	conf := frozen(t, id)
	conf.Certificates = []tls.Certificate{next}
	conn, err := grpc.NewClient(l.addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := evidentv1.NewCredentialsClient(conn).Confirm(context.Background(), &evidentv1.ConfirmRequest{}); err != nil {
		t.Fatalf("confirm: %v", err)
	}
}

// TestRevocation: revoking a device (through the admin service, as the CLI
// and web do) closes its live stream, from the replica's periodic check,
// well within a minute; the device then cannot reconnect, renew, or enroll
// again with its key; its stored evidence stays; other devices carry on.
func TestRevocation(t *testing.T) {
	l := newCredLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stolen, other := l.enroll(t, "stolen"), l.enroll(t, "other")
	stolenConf := frozen(t, stolen)

	ob, err := outbox.Open(filepath.Join(t.TempDir(), "outbox.db"), outbox.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	b, _ := proto.Marshal(&evidentv1.Observation{Collector: "osinfo", Status: evidentv1.Observation_STATUS_OK, CollectedAt: timestamppb.Now(), PayloadJson: []byte(`{}`)})
	if _, _, err := ob.Append(b, b); err != nil {
		t.Fatal(err)
	}
	up := &uplink.Uplink{Outbox: ob, Server: l.addr, TLS: stolen.TLSConfig, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan struct{})
	go func() { defer close(done); _ = up.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the stream to deliver", 30*time.Second, func() bool {
		s := up.State()
		return s.Connected && s.LastAckSeq == 2
	})

	svc := admin.New(l.st, l.clock, nil)
	if err := svc.RevokeDevice(ctx, "cli:it@host", stolen.DeviceID, "laptop reported stolen", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revoked device's stream to close", 60*time.Second, func() bool {
		s := up.State()
		return !s.Connected && s.Reconnects > 0
	})
	waitFor(t, "the reconnection to be refused as revoked", 60*time.Second, func() bool {
		return strings.Contains(up.State().LastError, "was revoked")
	})
	if err := deliver(t, l.addr, stolenConf, 3); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "laptop reported stolen") {
		t.Fatalf("revoked certificate: %v, want PermissionDenied naming the reason", err)
	}
	l.advance(61 * 24 * time.Hour)
	if err := stolen.Renew(context.Background(), nil); status.Code(errorsCause(err)) != codes.PermissionDenied {
		t.Fatalf("renewal of a revoked device: %v, want PermissionDenied", err)
	}
	key, err := os.ReadFile(filepath.Join(stolen.Dir(), "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enrollWithKey(l, key); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("enrollment with the revoked device's key: %v, want PermissionDenied", err)
	}
	if c, err := l.st.Counts(context.Background(), stolen.DeviceID); err != nil || c.Total != 2 {
		t.Fatalf("revoked device's evidence: %+v, %v; want its 2 observations kept", c, err)
	}
	if err := deliver(t, l.addr, frozen(t, other), 1); err != nil {
		t.Fatalf("another device after the revocation: %v", err)
	}
	entries, err := l.st.AuditLog(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		found = found || (e.Action == admin.ActionDeviceRevoke && strings.Contains(e.Detail, stolen.DeviceID))
	}
	if !found {
		t.Errorf("no %s audit entry for %s in %+v", admin.ActionDeviceRevoke, stolen.DeviceID, entries)
	}
}

// TestEnrollRefusesControlCharacters: a host field with an escape sequence,
// a newline or a bidirectional override is refused at enrollment (it would
// end up in auditors' terminals); an ordinary one is accepted.
func TestEnrollRefusesControlCharacters(t *testing.T) {
	l := newCredLab(t)
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"laptop-7.example.com", true},
		{"Über-Laptop", true},
		{"evil\x1b[2K\rDevice forged", false},
		{"two\nlines", false},
		{"abc\u202edcba", false},
	} {
		_, err := identity.Enroll(context.Background(), filepath.Join(t.TempDir(), "identity"), l.addr, l.token,
			&identity.HostFacts{Hostname: tt.host, Goos: "linux"}, identity.EnrollOptions{})
		if tt.ok != (err == nil) || !tt.ok && !strings.Contains(err.Error(), "control or escape character") {
			t.Errorf("enroll with hostname %q: %v; want accepted %v", tt.host, err, tt.ok)
		}
	}
}

// TestEnrollmentGuessingThrottled: after 20 wrong enrollment secrets from
// one address in 10 minutes, every enrollment from it (even with a good
// token) is refused with a retryable status until the window ends.
func TestEnrollmentGuessingThrottled(t *testing.T) {
	l := newCredLab(t)
	tok, err := enrolltoken.Parse(l.token)
	if err != nil {
		t.Fatal(err)
	}
	wrong := enrolltoken.Token{Secret: enrolltoken.NewSecret(), CAPin: tok.CAPin}.String()
	enrollWith := func(token string) error {
		_, err := identity.Enroll(context.Background(), filepath.Join(t.TempDir(), "identity"), l.addr, token,
			&identity.HostFacts{Hostname: "guesser"}, identity.EnrollOptions{})
		return err
	}
	for i := range 20 {
		if err := enrollWith(wrong); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
			t.Fatalf("wrong secret %d: %v", i+1, err)
		}
	}
	if err := enrollWith(l.token); err == nil || !strings.Contains(err.Error(), "too many failed enrollments") {
		t.Fatalf("a good token from the throttled address: %v, want refused", err)
	}
	l.advance(11 * time.Minute)
	if err := enrollWith(l.token); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}
