package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/evident-dev/evident/internal/enrolltoken"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// tpmFixture is a server on a real SQLite store with one device enrolled
// with a TPM and one without, and a settable clock.
type tpmFixture struct {
	srv   *Server
	st    *sqlite.Store
	clock time.Time
}

func newTPMFixture(t *testing.T) *tpmFixture {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &tpmFixture{st: st, clock: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.srv = &Server{Store: st, Policy: controls.Default(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return f.clock }}
	for _, d := range []store.Device{
		{ID: "with-tpm", EnrolledAt: f.clock, TPM: &store.DeviceTPM{EKHash: []byte("ek"), EKTrust: "allowlist", AKPublic: []byte("not a real AK")}},
		{ID: "other-tpm", EnrolledAt: f.clock, TPM: &store.DeviceTPM{EKHash: []byte("ek2"), EKTrust: "allowlist", AKPublic: []byte("another")}},
		{ID: "no-tpm", EnrolledAt: f.clock},
	} {
		if _, err := st.EnrollDevice(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// nonce issues a nonce to a device the way a stream does.
func (f *tpmFixture) nonce(t *testing.T, device string) []byte {
	t.Helper()
	var got *evidentv1.AttestationChallenge
	out := &sender{stream: sendFunc(func(m *evidentv1.ServerMessage) error { got = m.GetAttestationChallenge(); return nil })}
	if err := f.srv.challenge(context.Background(), out, device); err != nil {
		t.Fatal(err)
	}
	if got == nil || len(got.GetNonce()) != nonceBytes || !got.GetExpiresAt().AsTime().Equal(f.clock.Add(DefaultNonceTTL)) {
		t.Fatalf("challenge = %+v", got)
	}
	return got.GetNonce()
}

type sendFunc func(*evidentv1.ServerMessage) error

func (f sendFunc) Send(m *evidentv1.ServerMessage) error { return f(m) }

// TestAttestationNonces: the nonce is checked (and consumed) before the
// quote is looked at; each refusal is stored as a failed verdict with its
// own reason, without the raw message (kept only for verified ones), and
// fails DC-TPM-01.
func TestAttestationNonces(t *testing.T) {
	report, _ := proto.Marshal(&evidentv1.Report{})
	tests := []struct {
		name string
		// setup returns the attestation to send, from device.
		setup      func(t *testing.T, f *tpmFixture) (device string, a *evidentv1.Attestation)
		wantReason string
		wantStored bool
	}{
		{"fresh nonce reaches the quote checks", func(t *testing.T, f *tpmFixture) (string, *evidentv1.Attestation) {
			return "with-tpm", &evidentv1.Attestation{Nonce: f.nonce(t, "with-tpm"), Report: report, Error: "TPM busy"}
		}, "TPM busy", true},
		{"replayed nonce", func(t *testing.T, f *tpmFixture) (string, *evidentv1.Attestation) {
			n := f.nonce(t, "with-tpm")
			if _, err := f.srv.attestation(context.Background(), "with-tpm", &evidentv1.Attestation{Nonce: n, Report: report, Error: "first use"}, &time.Time{}); err != nil {
				t.Fatal(err)
			}
			return "with-tpm", &evidentv1.Attestation{Nonce: n, Report: report}
		}, "already used (replayed attestation)", true},
		{"expired nonce", func(t *testing.T, f *tpmFixture) (string, *evidentv1.Attestation) {
			n := f.nonce(t, "with-tpm")
			f.clock = f.clock.Add(DefaultNonceTTL)
			return "with-tpm", &evidentv1.Attestation{Nonce: n, Report: report}
		}, "nonce expired", true},
		{"another device's nonce", func(t *testing.T, f *tpmFixture) (string, *evidentv1.Attestation) {
			return "with-tpm", &evidentv1.Attestation{Nonce: f.nonce(t, "other-tpm"), Report: report}
		}, "not issued to this device", true},
		{"never issued", func(t *testing.T, f *tpmFixture) (string, *evidentv1.Attestation) {
			return "with-tpm", &evidentv1.Attestation{Nonce: []byte("0123456789abcdef0123456789abcdef"), Report: report}
		}, "not issued to this device", true},
		{"device enrolled without a TPM", func(t *testing.T, f *tpmFixture) (string, *evidentv1.Attestation) {
			return "no-tpm", &evidentv1.Attestation{Nonce: f.nonce(t, "no-tpm"), Report: report}
		}, "enrolled without a TPM", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTPMFixture(t)
			device, a := tc.setup(t, f)
			res, err := f.srv.attestation(context.Background(), device, a, &time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if res.GetVerified() || !strings.Contains(strings.Join(res.GetReasons(), "; "), tc.wantReason) {
				t.Errorf("result = %+v, want refused with %q", res, tc.wantReason)
			}
			stored, err := f.st.LatestAttestation(context.Background(), device, false)
			if !tc.wantStored {
				if err == nil {
					t.Errorf("an attestation was stored for %s", device)
				}
				return
			}
			if err != nil {
				t.Fatalf("verdict not stored: %v", err)
			}
			var v attest.Verdict
			if err := json.Unmarshal(stored.Verdict, &v); err != nil {
				t.Fatal(err)
			}
			if stored.Verified || v.Verified || !strings.Contains(strings.Join(v.Reasons, "; "), tc.wantReason) || len(stored.Raw) != 0 {
				t.Errorf("stored verdict = %+v (verified %v, raw %d bytes)", v, stored.Verified, len(stored.Raw))
			}
			cur, err := f.st.CurrentStates(context.Background(), device)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cur {
				if c.ControlID == "DC-TPM-01" && (c.Status != store.Fail || !strings.Contains(c.Reason, tc.wantReason)) {
					t.Errorf("DC-TPM-01 = %s (%s), want fail naming %q", c.Status, c.Reason, tc.wantReason)
				}
			}
		})
	}
}

// TestEnrollTPMRefusals: requests the server refuses before or instead of
// issuing a certificate, each with its own reason, and none spending the
// enrollment secret.
func TestEnrollTPMRefusals(t *testing.T) {
	f := newTPMFixture(t)
	ctx := context.Background()
	if err := f.st.CreateEnrollSecret(ctx, store.EnrollSecret{ID: "s", Hash: hashOf("secret"), CreatedAt: f.clock, SingleUse: true}); err != nil {
		t.Fatal(err)
	}
	csr := testCSR(t)
	tpmID := &evidentv1.TPMIdentity{EkPub: []byte("garbage"), Ak: &evidentv1.AKParameters{Public: []byte("garbage")}}
	tests := []struct {
		name     string
		req      *evidentv1.EnrollRequest
		wantCode codes.Code
		wantMsg  string
	}{
		{"oversized EK", &evidentv1.EnrollRequest{EnrollSecret: "secret", Csr: csr, Tpm: &evidentv1.TPMIdentity{EkPub: make([]byte, 9<<10), Ak: tpmID.Ak}},
			codes.InvalidArgument, "at most 8 KiB"},
		{"no AK", &evidentv1.EnrollRequest{EnrollSecret: "secret", Csr: csr, Tpm: &evidentv1.TPMIdentity{EkPub: []byte("x")}},
			codes.InvalidArgument, "ak.public are required"},
		{"unparseable EK", &evidentv1.EnrollRequest{EnrollSecret: "secret", Csr: csr, Tpm: tpmID},
			codes.PermissionDenied, "TPM identity refused"},
		{"proof without TPM", &evidentv1.EnrollRequest{EnrollSecret: "secret", Csr: csr, Activation: &evidentv1.ActivationProof{ChallengeId: "x"}},
			codes.InvalidArgument, "activation proof without a TPM identity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.srv.Enroll(ctx, tc.req)
			if status.Code(err) != tc.wantCode || !strings.Contains(status.Convert(err).Message(), tc.wantMsg) {
				t.Errorf("Enroll: %v, want %s containing %q", err, tc.wantCode, tc.wantMsg)
			}
		})
	}
	if _, err := f.st.PeekEnrollSecret(ctx, hashOf("secret"), f.clock); err != nil {
		t.Errorf("a refused TPM enrollment spent the single-use secret: %v", err)
	}
}

func hashOf(secret string) []byte { return enrolltoken.HashSecret(secret) }

// testCSR is a valid device CSR.
func testCSR(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "host"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestOneNonceAtATime: a device that reconnects does not collect nonces;
// a new one is issued once the previous one is used or has expired.
func TestOneNonceAtATime(t *testing.T) {
	f := newTPMFixture(t)
	sent := 0
	out := &sender{stream: sendFunc(func(m *evidentv1.ServerMessage) error {
		if m.GetAttestationChallenge() != nil {
			sent++
		}
		return nil
	})}
	ctx := context.Background()
	for range 3 {
		if err := f.srv.challenge(ctx, out, "with-tpm"); err != nil {
			t.Fatal(err)
		}
	}
	if sent != 1 {
		t.Fatalf("%d challenges sent while the first nonce was live, want 1", sent)
	}
	f.clock = f.clock.Add(DefaultNonceTTL)
	if err := f.srv.challenge(ctx, out, "with-tpm"); err != nil {
		t.Fatal(err)
	}
	if sent != 2 {
		t.Errorf("no new challenge after the nonce expired (%d sent)", sent)
	}
}

// challengeLog records the attestation challenges a stream was sent.
type challengeLog struct {
	mu     sync.Mutex
	nonces [][]byte
}

func (c *challengeLog) sender() *sender {
	return &sender{stream: sendFunc(func(m *evidentv1.ServerMessage) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.nonces = append(c.nonces, m.GetAttestationChallenge().GetNonce())
		return nil
	})}
}

func (c *challengeLog) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nonces)
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestAttestationChallenges: a TPM device's stream is challenged when
// it opens and again every attest interval (once the previous nonce has
// expired), with a fresh nonce each time; after stop, nothing more is
// sent; a challenge that cannot be stored ends them.
func TestAttestationChallenges(t *testing.T) {
	tests := []struct {
		name string
		// closeStore makes every challenge fail.
		closeStore bool
		// want is how many challenges the stream gets before stop.
		want int
	}{
		{"at once and every interval", false, 3},
		{"a failed challenge ends them", true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTPMFixture(t)
			// Real time: the nonces expire between challenges.
			f.srv.Now, f.srv.AttestEvery, f.srv.NonceTTL = time.Now, 30*time.Millisecond, 10*time.Millisecond
			if tc.closeStore {
				f.st.Close()
			}
			var log challengeLog
			ctx, cancel := context.WithCancel(context.Background())
			stop := f.srv.startAttesting(ctx, log.sender(), "with-tpm")
			if tc.want > 0 {
				waitFor(t, "challenges", func() bool { return log.count() >= tc.want })
			} else {
				time.Sleep(5 * f.srv.AttestEvery)
			}
			cancel()
			stop()
			n := log.count()
			if n < tc.want || (tc.want == 0 && n != 0) {
				t.Fatalf("%d challenges, want %d", n, tc.want)
			}
			seen := map[string]bool{}
			for _, nonce := range log.nonces {
				if len(nonce) != nonceBytes || seen[string(nonce)] {
					t.Fatalf("nonces %x: each must be new and %d bytes", log.nonces, nonceBytes)
				}
				seen[string(nonce)] = true
			}
			time.Sleep(5 * f.srv.AttestEvery)
			if got := log.count(); got != n {
				t.Fatalf("%d challenges sent after stop", got-n)
			}
		})
	}
}

// TestAttestationWaitHoldsNoGoroutine: between challenges, a connected
// TPM device costs the server no goroutine (a parked one would cost its
// stack for every stream of the fleet).
func TestAttestationWaitHoldsNoGoroutine(t *testing.T) {
	f := newTPMFixture(t)
	f.srv.AttestEvery = time.Hour
	const streams = 50
	before := runtime.NumGoroutine()
	var log challengeLog
	var stops []func()
	for range streams {
		stops = append(stops, f.srv.startAttesting(context.Background(), log.sender(), "with-tpm"))
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	// Each challenges at once (the nonce issued first is live for those
	// that look after it: they send nothing) and then waits an hour.
	waitFor(t, "a challenge", func() bool { return log.count() > 0 })
	waitFor(t, "no goroutine per stream", func() bool { return runtime.NumGoroutine() <= before+2 })
}
