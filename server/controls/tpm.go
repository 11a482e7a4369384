package controls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/store"
)

// TPMEvidence is a device's TPM as the server knows it: enrolled (EK and
// AK bound at enrollment) or not, and its latest attestation verdict.
type TPMEvidence struct {
	// GOOS is the platform the device enrolled as: only a darwin device's
	// "no TPM possible" is taken as not applicable.
	GOOS         string
	Enrolled     bool
	EKTrust      string
	EKCertIssuer string
	EnrolledAt   time.Time
	Attestation  *AttestationEvidence
}

// AttestationEvidence is one stored attestation verdict.
type AttestationEvidence struct {
	ID       int64
	At       time.Time
	FirstSeq uint64
	LastSeq  uint64
	Verdict  attest.Verdict
}

// LoadTPMEvidence reads a device's enrolled TPM and latest attestation
// verdict from the store: the TPM part of Input, for scoring and reports.
func LoadTPMEvidence(ctx context.Context, st store.TPMReader, deviceID, goos string) (*TPMEvidence, error) {
	dt, err := st.DeviceTPM(ctx, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return &TPMEvidence{GOOS: goos}, nil
	}
	if err != nil {
		return nil, err
	}
	ev := &TPMEvidence{GOOS: goos, Enrolled: true, EKTrust: dt.EKTrust, EKCertIssuer: dt.EKCertIssuer, EnrolledAt: dt.EnrolledAt}
	a, err := st.LatestAttestation(ctx, deviceID, false)
	if errors.Is(err, store.ErrNotFound) {
		return ev, nil
	}
	if err != nil {
		return nil, err
	}
	var v attest.Verdict
	if err := json.Unmarshal(a.Verdict, &v); err != nil {
		v = attest.Verdict{Reasons: []string{"stored verdict unreadable: " + err.Error()}}
	}
	v.Verified = v.Verified && a.Verified
	ev.Attestation = &AttestationEvidence{At: a.ReceivedAt, ID: a.ID, FirstSeq: a.FirstSeq, LastSeq: a.LastSeq, Verdict: v}
	return ev, nil
}

// attestationCollector names attestation verdicts as evidence.
const attestationCollector = "tpm.attestation"

// selfReported marks a decision taken from what the OS says rather than
// from a verified TPM event log.
const selfReported = " (reported by the OS; not attested)"

func (a *AttestationEvidence) result(status, reason string, t *TPMEvidence) Result {
	facts := map[string]any{
		"attestation_id": a.ID, "verified": a.Verdict.Verified, "reasons": a.Verdict.Reasons, "checks": a.Verdict.Checks,
		"banks": a.Verdict.Banks, "event_log": a.Verdict.EventLog, "secure_boot": a.Verdict.SecureBoot,
		"ek_trust": t.EKTrust, "ek_certificate_issuer": t.EKCertIssuer, "rebooted": a.Verdict.Rebooted,
		"covers_seq": []uint64{a.FirstSeq, a.LastSeq}, "report_sha256": a.Verdict.ReportSHA256,
	}
	// Each verification step is listed where an auditor reads sources.
	srcs := make([]evidence.Source, 0, len(a.Verdict.Checks))
	for _, c := range a.Verdict.Checks {
		outcome := "ok"
		if !c.OK {
			outcome = "FAILED"
		}
		ref := "attestation " + fmt.Sprint(a.ID) + " check " + c.Name + ": " + outcome
		srcs = append(srcs, evidence.Source{Kind: "verify", Ref: ref, Excerpt: c.Detail})
	}
	return Result{Status: status, Reason: reason, EvidenceSeq: a.LastSeq, EvidenceAt: a.At,
		Evidence: &Evidence{Collector: attestationCollector, Seq: a.LastSeq, CollectedAt: a.At, Facts: facts, Sources: srcs}}
}

type tpmParams struct {
	RequireAttestation bool `json:"require_attestation"`
}

func newTPM(raw json.RawMessage) (evaluator, error) {
	var p tpmParams
	if err := strictParams(raw, &p); err != nil {
		return nil, err
	}
	return func(in Input) Result {
		if t := in.TPM; t != nil && t.Attestation != nil {
			a := t.Attestation
			if !a.Verdict.Verified {
				return a.result(store.Fail, "TPM attestation failed: "+strings.Join(a.Verdict.Reasons, "; "), t)
			}
			trust := t.EKTrust
			if t.EKCertIssuer != "" {
				trust += " issued by " + t.EKCertIssuer
			}
			return a.result(store.Pass, fmt.Sprintf("TPM 2.0 quote verified with the AK bound at enrollment (EK: %s); PCRs %s; event log %s",
				trust, strings.Join(a.Verdict.Banks, "+")+" 0-7", a.Verdict.EventLog), t)
		}
		tp, o, r, ok := observed[evidence.TPMPayload](in, evidence.TPM)
		enrolled := in.TPM != nil && in.TPM.Enrolled
		switch {
		case enrolled && p.RequireAttestation:
			return Result{Status: store.Unknown, Reason: "TPM bound at enrollment (EK: " + in.TPM.EKTrust + "); no attestation received yet",
				EvidenceAt: in.TPM.EnrolledAt}
		case !ok:
			return r
		case tp.NotApplicable != "" && (in.TPM == nil || in.TPM.GOOS == "darwin"):
			// Only a device that enrolled as a Mac may say a TPM cannot
			// exist there: a report cannot opt a PC out of attestation.
			return decided(o, store.NotApplicable, "not applicable: "+tp.NotApplicable, tp)
		case tp.NotApplicable != "":
			return decided(o, store.Fail, "no TPM: this "+in.TPM.GOOS+" device reports that it cannot have one ("+tp.NotApplicable+"), so nothing it reports is attested", tp)
		case !tp.Present:
			return decided(o, store.Fail, "no TPM: this device has no TPM, so neither its identity nor what it booted can be attested", tp)
		case tp.Version != "2.0":
			return decided(o, store.Fail, "TPM "+tp.Version+" found; TPM 2.0 is required", tp)
		case p.RequireAttestation && in.TPM != nil:
			return decided(o, store.Fail, "TPM 2.0 present but the agent enrolled without it, so nothing it reports is attested: "+
				"re-enroll with TPM access (evident-agent enroll --tpm)", tp)
		case p.RequireAttestation:
			return decided(o, store.Unknown, "TPM 2.0 present; no attestation information", tp)
		default:
			return decided(o, store.Pass, "TPM 2.0 present"+selfReported, tp)
		}
	}, nil
}

// attestedSecureBoot decides Secure Boot from the latest verified
// attestation whose event log replayed: only verified events count.
func attestedSecureBoot(in Input) (Result, bool) {
	t := in.TPM
	if t == nil || t.Attestation == nil || !t.Attestation.Verdict.Verified || t.Attestation.Verdict.SecureBoot == nil {
		return Result{}, false
	}
	a := t.Attestation
	if a.Verdict.SecureBoot.Enabled {
		return a.result(store.Pass, "Secure Boot enabled (from the TPM event log, replayed against a verified quote)", t), true
	}
	return a.result(store.Fail, "Secure Boot is disabled (from the TPM event log, replayed against a verified quote)", t), true
}
