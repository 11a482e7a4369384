package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/agent/tpm"
	wall "github.com/evident-dev/evident/internal/clock"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// TPM specs with a meaning beyond tpm.Open's.
const (
	// TPMAuto uses the platform TPM when the machine has one.
	TPMAuto = "auto"
	// TPMNone enrolls without a TPM.
	TPMNone = "none"
	// tpmPlatform is how an identity records the platform TPM.
	tpmPlatform = "platform"
)

// openSpec maps a recorded or given TPM spec to tpm.Open's.
func openSpec(spec string) string {
	if spec == tpmPlatform || spec == TPMAuto {
		return ""
	}
	return spec
}

// TPMSession is an open TPM with the device's AK loaded: what enrollment
// binds to and what attestation quotes with.
type TPMSession struct {
	Dev *tpm.Device
	AK  *tpm.AK
	// Spec is the spec to record ("platform" for the platform TPM).
	Spec string
}

// OpenTPM opens the TPM named by spec (TPMAuto or "" for the platform TPM)
// and loads the AK kept at akPath, creating it when absent. With TPMAuto,
// a machine without a TPM gives (nil, nil).
func OpenTPM(spec, eventLog, akPath string) (*TPMSession, error) {
	if spec == TPMNone {
		return nil, nil
	}
	dev, err := tpm.Open(openSpec(spec), eventLog)
	if err != nil {
		if (spec == TPMAuto || spec == "") && errors.Is(err, tpm.ErrNoTPM) {
			return nil, nil
		}
		return nil, err
	}
	ak, _, err := dev.LoadOrCreateAK(akPath)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("attestation key: %w", err)
	}
	rec := openSpec(spec)
	if rec == "" {
		rec = tpmPlatform
	}
	return &TPMSession{Dev: dev, AK: ak, Spec: rec}, nil
}

// Identity implements identity.TPMBinding.
func (s *TPMSession) Identity() (*evidentv1.TPMIdentity, error) { return s.Dev.Identity(s.AK) }

// Activate implements identity.TPMBinding.
func (s *TPMSession) Activate(ch *evidentv1.ActivationChallenge) ([]byte, error) {
	return s.Dev.Activate(s.AK, ch)
}

// Close flushes the AK and closes the TPM.
func (s *TPMSession) Close() error {
	return errors.Join(s.AK.Close(), s.Dev.Close())
}

// attest answers one challenge: a quote of PCRs 0-7 in every bank over the
// nonce and the latest collection cycle's report, with the event log. A
// failure to quote is sent too, so the server records it as evidence
// rather than waiting for a quote that never comes.
func (a *Agent) attest(ctx context.Context, ch *evidentv1.AttestationChallenge) {
	log := a.cfg.Log
	if exp := ch.GetExpiresAt(); exp.IsValid() && wall.Now().After(exp.AsTime()) {
		log.Warn("attestation challenge expired before it could be answered; the server will send another")
		return
	}
	// A cycle in progress (the first one, when the server challenges on
	// connect) finishes first: its observations are what to cover.
	a.cycleMu.Lock()
	a.cycleMu.Unlock() //nolint:staticcheck // a barrier, not a critical section
	a.mu.Lock()
	batch := a.lastBatch
	a.mu.Unlock()
	if batch == nil {
		if err := a.cycle(ctx, nil); err != nil {
			log.Error("collection for attestation failed", "err", err)
		}
		a.mu.Lock()
		batch = a.lastBatch
		a.mu.Unlock()
	}
	report, err := proto.MarshalOptions{Deterministic: true}.Marshal(batch)
	if err != nil {
		log.Error("attestation: encode report", "err", err)
		return
	}
	start := time.Now()
	att, err := a.quote(ch.GetNonce(), report)
	if err != nil {
		log.Error("attestation failed on this device; reporting the failure", "tpm", a.id.TPM, "err", err)
		att = &evidentv1.Attestation{Nonce: ch.GetNonce(), Report: report, Error: err.Error()}
	} else {
		if att.GetEventLogError() != "" {
			log.Warn("TPM event log unreadable; quote sent without it", "err", att.GetEventLogError())
		}
		log.Info("attestation sent", "quotes", len(att.GetQuotes()), "observations", len(batch.GetObservations()),
			"event_log_bytes", len(att.GetEventLog()), "took", time.Since(start).Round(time.Millisecond))
	}
	if !a.up.SendAttestation(att) {
		log.Warn("attestation dropped: the uplink queue is full")
	}
}

func (a *Agent) quote(nonce, report []byte) (*evidentv1.Attestation, error) {
	spec, eventLog := a.id.TPM, a.id.TPMEventLog
	if a.cfg.TPM != "" && a.cfg.TPM != TPMAuto && a.cfg.TPM != TPMNone {
		spec = a.cfg.TPM
	}
	if a.cfg.TPMEventLog != "" {
		eventLog = a.cfg.TPMEventLog
	}
	s, err := OpenTPM(spec, eventLog, identity.AKPath(a.id.Dir()))
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, tpm.ErrNoTPM
	}
	defer s.Close()
	return s.Dev.Attest(s.AK, nonce, report)
}
