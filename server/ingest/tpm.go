package ingest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/internal/enrolltoken"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
)

// Defaults for TPM attestation (README: TPM attestation).
const (
	DefaultNonceTTL      = 2 * time.Minute
	DefaultActivationTTL = 5 * time.Minute
	DefaultAttestEvery   = time.Hour
	nonceBytes           = 32
	maxTPMFieldBytes     = 8 << 10
)

// tpmFieldsOK bounds every TPM identity field before anything parses it.
func tpmFieldsOK(t *evidentv1.TPMIdentity) bool {
	ak := t.GetAk()
	for _, b := range [][]byte{t.GetEkPub(), t.GetEkCert(), ak.GetPublic(), ak.GetCreateData(), ak.GetCreateAttestation(), ak.GetCreateSignature()} {
		if len(b) > maxTPMFieldBytes {
			return false
		}
	}
	return len(t.GetEkPub()) > 0 && len(ak.GetPublic()) > 0
}

func (s *Server) ekPolicy() *attest.EKPolicy {
	if s.EKPolicy != nil {
		return s.EKPolicy
	}
	return &attest.EKPolicy{}
}

// enrollTPM is enrollment for a device with a TPM, in two calls. The first
// checks the secret (without spending it), the EK (manufacturer roots or
// allowlist) and the AK (attributes, creation data), and answers with a
// MakeCredential challenge. The second proves, with the secret only the
// TPM holding both keys could recover, that the AK is resident with that
// EK; only then is the enrollment secret spent and a certificate issued.
func (s *Server) enrollTPM(ctx context.Context, req *evidentv1.EnrollRequest) (*evidentv1.EnrollResponse, error) {
	h, tpmID := req.GetHost(), req.GetTpm()
	if !tpmFieldsOK(tpmID) {
		return nil, status.Error(codes.InvalidArgument, "tpm: ek_pub and ak.public are required and each TPM field must be at most 8 KiB")
	}
	secretHash := enrolltoken.HashSecret(req.GetEnrollSecret())
	now := s.now()
	// The secret first: only a holder of a valid enrollment token makes the
	// server parse certificates and keys, and learns why a TPM is refused.
	if _, err := s.Store.PeekEnrollSecret(ctx, secretHash, now); err != nil {
		return nil, s.secretError(err, h)
	}
	enrolled, err := attest.CheckTPMIdentity(tpmID, s.ekPolicy())
	if err != nil {
		s.Log.Warn("TPM enrollment refused", "hostname", h.GetHostname(), "err", err)
		return nil, status.Errorf(codes.PermissionDenied, "TPM identity refused: %v", err)
	}
	if req.GetActivation() == nil {
		secret, ch, err := attest.NewActivation(tpmID)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "tpm: %v", err)
		}
		sum := sha256.Sum256(secret)
		act := store.Activation{ID: pki.NewDeviceID(), SecretHash: secretHash, ExpectedHash: sum[:], EKHash: enrolled.EKHash[:],
			AKPublic: enrolled.AKPublic, ExpiresAt: now.Add(s.activationTTL())}
		if err := s.Store.CreateActivation(ctx, act); err != nil {
			s.Log.Error("enrollment: store activation", "err", err)
			return nil, status.Error(codes.Unavailable, "enrollment temporarily unavailable")
		}
		ch.ChallengeId, ch.ExpiresAt = act.ID, timestamppb.New(act.ExpiresAt)
		s.Log.Info("TPM enrollment: credential challenge issued", "hostname", h.GetHostname(), "ek_sha256", hex.EncodeToString(enrolled.EKHash[:]), "ek_trust", enrolled.EKTrust)
		return &evidentv1.EnrollResponse{Activation: ch}, nil
	}

	proof := req.GetActivation()
	act, err := s.Store.TakeActivation(ctx, proof.GetChallengeId(), now)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExpired):
		return nil, status.Error(codes.PermissionDenied, "TPM activation challenge is unknown, already used or expired: enroll again")
	case err != nil:
		s.Log.Error("enrollment: take activation", "err", err)
		return nil, status.Error(codes.Unavailable, "enrollment temporarily unavailable")
	}
	if subtle.ConstantTimeCompare(act.SecretHash, secretHash) != 1 || subtle.ConstantTimeCompare(act.EKHash, enrolled.EKHash[:]) != 1 ||
		subtle.ConstantTimeCompare(act.AKPublic, enrolled.AKPublic) != 1 {
		return nil, status.Error(codes.PermissionDenied, "TPM activation proof does not match the challenged enrollment secret, EK and AK")
	}
	got := sha256.Sum256(proof.GetSecret())
	if subtle.ConstantTimeCompare(got[:], act.ExpectedHash) != 1 {
		s.Log.Warn("TPM enrollment refused: wrong activation secret", "hostname", h.GetHostname())
		return nil, status.Error(codes.PermissionDenied, "TPM activation failed: the AK is not resident in the TPM of this EK (ActivateCredential returned the wrong secret)")
	}
	if err := s.checkTPMChange(ctx, h.GetMachineId(), enrolled, now); err != nil {
		return nil, err
	}
	return s.finishEnroll(ctx, req, &store.DeviceTPM{
		EKHash: enrolled.EKHash[:], EKTrust: enrolled.EKTrust, EKCertSubject: enrolled.EKCertSubject,
		EKCertIssuer: enrolled.EKCertIssuer, EKCertSerial: enrolled.EKCertSerial, AKPublic: enrolled.AKPublic,
	})
}

// checkTPMChange refuses an enrollment that would change the EK or AK of a
// known device (the same EK with another AK, or the same machine with
// another EK) unless an admin allowed it (`evident-server device
// allow-tpm-change`); the allowance is used up.
func (s *Server) checkTPMChange(ctx context.Context, machineID string, e *attest.EnrolledTPM, now time.Time) error {
	var known, what string
	if id, t, err := s.Store.DeviceByEK(ctx, e.EKHash[:]); err == nil {
		if subtle.ConstantTimeCompare(t.AKPublic, e.AKPublic) != 1 {
			known, what = id, "its attestation key (AK)"
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return status.Error(codes.Unavailable, "enrollment temporarily unavailable")
	} else if id, t, err := s.Store.MachineTPM(ctx, machineID); err == nil {
		if subtle.ConstantTimeCompare(t.EKHash, e.EKHash[:]) != 1 {
			known, what = id, "its TPM (endorsement key)"
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return status.Error(codes.Unavailable, "enrollment temporarily unavailable")
	}
	return s.useAllowance(ctx, known, what, now)
}

// checkTPMDropped refuses an enrollment without a TPM for a machine that
// enrolled with one (dropping the TPM would shed its attestation), unless
// an admin allowed it.
func (s *Server) checkTPMDropped(ctx context.Context, machineID string, now time.Time) error {
	id, _, err := s.Store.MachineTPM(ctx, machineID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return status.Error(codes.Unavailable, "enrollment temporarily unavailable")
	}
	return s.useAllowance(ctx, id, "its TPM (enrolling without one)", now)
}

// useAllowance lets a change to known's TPM binding through only with an
// admin's allowance, and uses it up.
func (s *Server) useAllowance(ctx context.Context, known, what string, now time.Time) error {
	if known == "" {
		return nil
	}
	switch err := s.Store.TakeTPMChangeAllowance(ctx, known, now); {
	case err == nil:
		s.Log.Warn("TPM change allowed by an admin", "device", known, "changed", what)
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExpired):
		s.Log.Warn("enrollment refused: TPM changed", "device", known, "changed", what)
		return status.Errorf(codes.PermissionDenied, "device %s is already enrolled and this enrollment changes %s; "+
			"if that is expected (new mainboard, reinstalled agent), an admin must run `evident-server device allow-tpm-change %s` first", known, what, known)
	default:
		return status.Error(codes.Unavailable, "enrollment temporarily unavailable")
	}
}

func (s *Server) activationTTL() time.Duration {
	if s.ActivationTTL > 0 {
		return s.ActivationTTL
	}
	return DefaultActivationTTL
}

func (s *Server) nonceTTL() time.Duration {
	if s.NonceTTL > 0 {
		return s.NonceTTL
	}
	return DefaultNonceTTL
}

// AttestEveryOrDefault is how often a connected TPM device is challenged.
func (s *Server) attestEvery() time.Duration {
	if s.AttestEvery > 0 {
		return s.AttestEvery
	}
	return DefaultAttestEvery
}

// sender serializes sends on a stream (the receive loop acks, the
// attestation ticker challenges).
type sender struct {
	mu     sync.Mutex
	closed atomic.Bool
	stream interface {
		Send(*evidentv1.ServerMessage) error
	}
}

// errStreamClosed is what a send after the stream's handler returned gets.
var errStreamClosed = errors.New("evidence stream closed")

func (s *sender) send(m *evidentv1.ServerMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errStreamClosed
	}
	return s.stream.Send(m)
}

// close makes later sends fail: gRPC forbids sending on a stream whose
// handler has returned, and other goroutines (commands, trust bundles)
// may still hold the sender. It does not wait for a send in progress (one
// blocked on a client that stopped reading would hold the handler).
func (s *sender) close() { s.closed.Store(true) }

// newNonce is a fresh random challenge.
func newNonce() ([]byte, error) {
	nonce := make([]byte, nonceBytes)
	_, err := rand.Read(nonce)
	return nonce, err
}

// challenge issues a fresh single-use nonce to a device and sends it,
// unless the device already holds an unexpired one (one at a time, however
// often it reconnects).
func (s *Server) challenge(ctx context.Context, out *sender, deviceID string) error {
	if live, err := s.Store.HasLiveNonce(ctx, deviceID, s.now()); err != nil || live {
		return err
	}
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	exp := s.now().Add(s.nonceTTL())
	if err := s.Store.CreateNonce(ctx, store.Nonce{Value: nonce, DeviceID: deviceID, ExpiresAt: exp}); err != nil {
		return err
	}
	return out.send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_AttestationChallenge{
		AttestationChallenge: &evidentv1.AttestationChallenge{Nonce: nonce, ExpiresAt: timestamppb.New(exp)}}})
}

// startAttesting challenges a TPM device at once and then every
// attestEvery, until stop (which waits for a challenge in progress). A
// timer runs it, not a goroutine of its own: a connected device waits for
// hours between challenges, and a parked goroutine would cost its stack
// (4 to 8 KiB) for each of the fleet's streams (test/bench -only streams
// counts the goroutines per stream). ctx ends the challenge in progress;
// the caller cancels it before stop.
func (s *Server) startAttesting(ctx context.Context, out *sender, deviceID string) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		running sync.WaitGroup
		t       *time.Timer
	)
	fire := func() {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		running.Add(1)
		mu.Unlock()
		defer running.Done()
		if err := s.challenge(ctx, out, deviceID); err != nil {
			if ctx.Err() == nil {
				s.Log.Warn("attestation challenge not sent", "device", deviceID, "err", err)
			}
			return // as a closed stream: no more challenges
		}
		mu.Lock()
		if !stopped {
			t.Reset(s.attestEvery())
		}
		mu.Unlock()
	}
	mu.Lock()
	t = time.AfterFunc(0, fire)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
		running.Wait()
	}
}

// failedVerdict is the verdict for an attestation refused before its quote
// was looked at.
func failedVerdict(check, reason string) *attest.Verdict {
	return &attest.Verdict{Reasons: []string{reason}, Checks: []attest.Check{{Name: check, OK: false, Detail: reason}}}
}

// attestation verifies one Attestation, stores the verdict as evidence,
// ingests the report it covers when verified, rescores the device and
// returns what to tell the agent. Only store failures are errors: a quote
// failing any check is evidence of failure.
func (s *Server) attestation(ctx context.Context, deviceID string, a *evidentv1.Attestation, lastCollected *time.Time) (*evidentv1.AttestationResult, error) {
	now := s.now().UTC()
	log := s.Log.With("device", deviceID)
	dt, err := s.Store.DeviceTPM(ctx, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return &evidentv1.AttestationResult{Reasons: []string{"this device enrolled without a TPM; re-enroll with its TPM to attest"}}, nil
	}
	if err != nil {
		return nil, err
	}
	var v *attest.Verdict
	nonceOK := false
	_, err = s.Store.TakeNonce(ctx, deviceID, a.GetNonce(), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		v = failedVerdict("nonce", "nonce was not issued to this device or was already used (replayed attestation)")
	case errors.Is(err, store.ErrExpired):
		v = failedVerdict("nonce", "nonce expired before the attestation arrived")
	case err != nil:
		return nil, err
	default:
		nonceOK = true
		var prev *attest.ClockInfo
		if last, err := s.Store.LatestAttestation(ctx, deviceID, true); err == nil {
			var pv attest.Verdict
			if json.Unmarshal(last.Verdict, &pv) == nil {
				prev = &pv.Clock
			}
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		v = attest.VerifyAttestation(dt.AKPublic, a.GetNonce(), a, prev)
	}

	var rep evidentv1.Report
	var first, last uint64
	if err := coveredReport(a.GetReport(), &rep); err != nil {
		if v.Verified {
			v.Verified = false
			v.Reasons = append(v.Reasons, "the covered report is not acceptable: "+err.Error())
			v.Checks = append(v.Checks, attest.Check{Name: "report", Detail: err.Error()})
		}
	} else if n := len(rep.GetObservations()); n > 0 {
		first, last = rep.GetObservations()[0].GetSeq(), rep.GetObservations()[n-1].GetSeq()
	}
	if v.Verified && first > 0 {
		// The attested copies of these observations are stored (or were
		// already: ingest is idempotent on (device, seq)).
		if _, err := s.ingest(ctx, deviceID, rep.GetObservations(), lastCollected); err != nil {
			return nil, err
		}
	}
	verdict, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// The raw message is kept only for a verified attestation the server
	// asked for (at most one per issued nonce): others cannot grow the
	// store by more than their verdict.
	var raw []byte
	if nonceOK && v.Verified {
		raw, _ = proto.Marshal(a)
	}
	if _, err := s.Store.AddAttestation(ctx, store.Attestation{DeviceID: deviceID, ReceivedAt: now, Verified: v.Verified,
		Verdict: verdict, FirstSeq: first, LastSeq: last, Raw: raw}); err != nil {
		return nil, err
	}
	if v.Verified {
		log.Info("attestation verified", "banks", v.Banks, "event_log", v.EventLog, "covers_seq", fmt.Sprintf("%d-%d", first, last), "rebooted", v.Rebooted)
	} else {
		log.Warn("attestation failed", "reasons", v.Reasons)
	}
	if err := s.Score(ctx, deviceID, now); err != nil {
		log.Error("scoring failed", "err", err)
	}
	outcome := "refused"
	if v.Verified {
		outcome = "verified"
	}
	s.metrics().attestations.WithLabelValues(outcome).Inc()
	return &evidentv1.AttestationResult{Verified: v.Verified, Reasons: v.Reasons}, nil
}

// coveredReport decodes the report an attestation covers and checks it is
// one ingest accepts: at most MaxBatch observations, seqs increasing.
func coveredReport(b []byte, rep *evidentv1.Report) error {
	if err := proto.Unmarshal(b, rep); err != nil {
		return fmt.Errorf("undecodable: %w", err)
	}
	obs := rep.GetObservations()
	if len(obs) > MaxBatch {
		return fmt.Errorf("%d observations; at most %d", len(obs), MaxBatch)
	}
	var prev uint64
	for _, o := range obs {
		if o.GetSeq() <= prev {
			return fmt.Errorf("seqs must increase (%d after %d)", o.GetSeq(), prev)
		}
		prev = o.GetSeq()
	}
	return nil
}
