package attest

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	gattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"

	"github.com/evident-dev/evident/internal/quotedata"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// Bounds of an Attestation. Anything larger is refused (not verified), never
// decoded.
const (
	// MinAttestationNonceLen is the shortest server nonce accepted.
	MinAttestationNonceLen = 16
	// MaxEventLogSize bounds the firmware event log (real ones are 10-100 KiB).
	MaxEventLogSize = 1 << 20
	// MaxQuotes bounds the quotes (one per PCR bank).
	MaxQuotes = 8
	// MaxPCRValues bounds the reported PCR values.
	MaxPCRValues = 64
	// maxQuotePart bounds a quote's TPMS_ATTEST and TPMT_SIGNATURE.
	maxQuotePart = 4 << 10
	// maxText bounds agent-supplied text copied into a verdict.
	maxText = 1 << 10
)

// Check names, in the order they appear in Verdict.Checks.
const (
	CheckAgent          = "agent"           // the agent could attest
	CheckInput          = "input"           // sizes and structure within bounds
	CheckNonce          = "nonce"           // the nonce is the one issued, long enough
	CheckSignature      = "signature"       // per quote: TPM-generated quote signed by the enrolled AK
	CheckQualifyingData = "qualifying_data" // per quote: extraData = quotedata.Compute(nonce, report)
	CheckPCRDigest      = "pcr_digest"      // per quote: PCRs 0-7 of its bank, digest matches the values
	CheckBanks          = "banks"           // a SHA-256 or stronger bank quoted
	CheckEventLog       = "event_log"       // the event log replays to the quoted PCRs (missing is OK)
	CheckClock          = "clock"           // the TPM clock moved forward since the previous quote
)

// quotedPCRs are the PCRs every quote must cover (README: TPM attestation).
var quotedPCRs = []uint32{0, 1, 2, 3, 4, 5, 6, 7}

// ClockInfo is the TPM clock state of a verified quote. ResetCount and
// RestartCount are as the TPM reports them: obfuscated for keys outside the
// endorsement and platform hierarchies, so only compare them for equality
// between quotes by the same AK.
type ClockInfo struct {
	Clock        uint64 `json:"clock"`
	ResetCount   uint32 `json:"reset_count"`
	RestartCount uint32 `json:"restart_count"`
	Safe         bool   `json:"safe"`
}

// Check is one verification step.
type Check struct {
	Name   string `json:"name"`
	Bank   string `json:"bank,omitempty"` // PCR bank of per-quote checks
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// SecureBoot is the Secure Boot state read from verified (replayed) events of
// PCR 7 by go-attestation's ParseSecurebootState. Certificates are named by
// subject; hashes are hex.
type SecureBoot struct {
	Enabled               bool     `json:"enabled"`
	PlatformKeys          []string `json:"platform_keys,omitempty"`
	ExchangeKeys          []string `json:"exchange_keys,omitempty"`
	PermittedKeys         []string `json:"permitted_keys,omitempty"`
	ForbiddenKeys         []string `json:"forbidden_keys,omitempty"`
	ForbiddenHashes       int      `json:"forbidden_hashes"` // dbx entries that are hashes
	PreSeparatorAuthority []string `json:"pre_separator_authority,omitempty"`
	// Authorities are the certificates that authorized boot binaries after
	// the separator (the bootloader's signers).
	Authorities           []string `json:"authorities,omitempty"`
	DMAProtectionDisabled bool     `json:"dma_protection_disabled"`
}

// Verdict is the outcome of verifying one attestation, stored as evidence.
type Verdict struct {
	// Verified is true when every check passed.
	Verified bool `json:"verified"`
	// Reasons has one human-readable line per failed check.
	Reasons []string `json:"reasons"`
	// Checks are the steps taken, in order (see the Check* names).
	Checks []Check `json:"checks"`
	// Banks are the PCR banks whose quote verified, e.g. ["sha256"].
	Banks []string `json:"banks"`
	// PCRs holds the verified PCR values: bank, then index, then hex.
	PCRs map[string]map[int]string `json:"pcrs"`
	// EventLog is "replayed", "missing: <agent's reason>", "does not replay:
	// <detail>", "unparseable: <detail>", "too large: <detail>" or "not
	// checked: <why>".
	EventLog string `json:"event_log"`
	// SecureBoot is set only from a replayed event log.
	SecureBoot *SecureBoot `json:"secure_boot,omitempty"`
	// Clock is the TPM clock of the first verified quote.
	Clock ClockInfo `json:"clock"`
	// Rebooted is true when the reset or restart count differs from the
	// previous verified quote's.
	Rebooted bool `json:"rebooted"`
	// ReportSHA256 is the hex SHA-256 of the report the quotes cover.
	ReportSHA256 string `json:"report_sha256"`
}

func (v *Verdict) add(name, bank string, ok bool, reason, detail string) {
	v.Checks = append(v.Checks, Check{Name: name, Bank: bank, OK: ok, Detail: detail})
	if !ok {
		v.Reasons = append(v.Reasons, reason)
	}
}

// VerifyAttestation verifies a device's attestation against the AK public
// (TPMT_PUBLIC) enrolled for it, never one sent with the attestation, and the
// nonce the server issued (already consumed from its single-use store). prev
// is the clock of the previous verified quote by the same AK, or nil.
//
// The attestation is verified when: the agent reported no error; every input
// is within bounds; a.Nonce equals nonce (constant time, at least
// MinAttestationNonceLen bytes); every quote is a TPM-generated quote signed
// by the AK whose extraData is quotedata.Compute(nonce, a.Report), covering
// PCRs 0-7 of its bank with a digest matching the reported values; a SHA-256
// or stronger bank verified; the event log, when present, replays to the
// verified PCR values (a log that does not is tampering or a broken
// platform; a missing one is recorded, not failed); and the TPM clock moved
// forward unless the TPM rebooted. Secure Boot state is read only from the
// replayed events. VerifyAttestation never panics on hostile input.
func VerifyAttestation(akPublic []byte, nonce []byte, a *evidentv1.Attestation, prev *ClockInfo) *Verdict {
	v := &Verdict{Reasons: []string{}, Banks: []string{}, PCRs: map[string]map[int]string{}}
	defer func() {
		// Defence in depth: the decoders below are meant not to panic.
		if r := recover(); r != nil {
			v.add(CheckInput, "", false, "attestation could not be decoded", fmt.Sprintf("panic in VerifyAttestation: %v", r))
			v.Verified = false
		}
	}()
	if a == nil {
		a = &evidentv1.Attestation{}
	}
	rh := sha256.Sum256(a.GetReport())
	v.ReportSHA256 = hex.EncodeToString(rh[:])
	v.EventLog = "not checked: attestation not verified"

	if e := a.GetError(); e != "" {
		v.add(CheckAgent, "", false, "agent could not attest: "+clip(e), clip(e))
		return v
	}
	v.add(CheckAgent, "", true, "", "")

	if msg := checkBounds(a); msg != "" {
		v.add(CheckInput, "", false, "attestation out of bounds: "+msg, msg)
		return v
	}
	pcrs, err := reportedPCRs(a.GetPcrs())
	if err != nil {
		v.add(CheckInput, "", false, "reported PCR values malformed: "+err.Error(), err.Error())
		return v
	}
	_, akPub, err := parseAK(akPublic)
	if err != nil {
		v.add(CheckInput, "", false, "enrolled AK unusable: "+err.Error(), err.Error())
		return v
	}
	v.add(CheckInput, "", true, "", "")

	switch {
	case len(nonce) < MinAttestationNonceLen:
		v.add(CheckNonce, "", false, fmt.Sprintf("issued nonce too short (%d bytes, want at least %d)", len(nonce), MinAttestationNonceLen), "")
	case subtle.ConstantTimeCompare(a.GetNonce(), nonce) != 1:
		v.add(CheckNonce, "", false, "attestation nonce is not the nonce issued", "")
	default:
		v.add(CheckNonce, "", true, "", fmt.Sprintf("%d bytes", len(nonce)))
	}
	qd := quotedata.Compute(nonce, a.GetReport())

	var first *Result
	verified := PCRs{}
	for i, q := range a.GetQuotes() {
		bank := tpm2.TPMAlgID(q.GetHashAlg())
		name := AlgName(bank)
		sel := Selection{{Hash: bank, PCRs: quotedPCRs}}
		res, err := VerifyQuote(akPub, q.GetAttest(), q.GetSignature(), pcrs, qd, sel)
		switch {
		case err == nil:
			v.add(CheckSignature, name, true, "", "")
			v.add(CheckQualifyingData, name, true, "", "")
			v.add(CheckPCRDigest, name, true, "", fmt.Sprintf("%s:%x", AlgName(res.SigHash), res.PCRDigest))
			verified[bank] = pcrs[bank]
			v.Banks = append(v.Banks, name)
			if first == nil {
				first = res
			}
		case errors.Is(err, ErrNonceMismatch):
			v.add(CheckSignature, name, true, "", "")
			v.add(CheckQualifyingData, name, false, fmt.Sprintf("quote %d (%s): qualifying data does not bind the issued nonce and this report (replayed quote or altered report)", i, name), err.Error())
		case errors.Is(err, ErrPCRSelectionMismatch), errors.Is(err, ErrPCRMissing), errors.Is(err, ErrPCRDigestMismatch):
			v.add(CheckSignature, name, true, "", "")
			v.add(CheckQualifyingData, name, true, "", "")
			v.add(CheckPCRDigest, name, false, fmt.Sprintf("quote %d (%s): quoted PCR digest does not match the reported PCR values: %v", i, name, err), err.Error())
		case errors.Is(err, ErrBadSignature):
			v.add(CheckSignature, name, false, fmt.Sprintf("quote %d (%s): quote signature does not verify with the enrolled AK", i, name), err.Error())
		default:
			v.add(CheckSignature, name, false, fmt.Sprintf("quote %d (%s): not a valid TPM quote: %v", i, name, err), err.Error())
		}
	}
	if len(a.GetQuotes()) == 0 {
		v.add(CheckSignature, "", false, "attestation has no quote", "")
	}

	// A failed quote has its own reason: this check is about what was quoted.
	strong := false
	var quoted []string
	for _, q := range a.GetQuotes() {
		b := tpm2.TPMAlgID(q.GetHashAlg())
		if b == tpm2.TPMAlgSHA256 || b == tpm2.TPMAlgSHA384 || b == tpm2.TPMAlgSHA512 {
			strong = true
		}
		quoted = append(quoted, AlgName(b))
	}
	if len(a.GetQuotes()) > 0 {
		v.add(CheckBanks, "", strong, "no SHA-256 or stronger PCR bank quoted", fmt.Sprint(quoted))
	}
	for b := range verified {
		m := map[int]string{}
		for _, p := range quotedPCRs {
			m[int(p)] = hex.EncodeToString(verified[b][p])
		}
		v.PCRs[AlgName(b)] = m
	}

	if len(verified) > 0 {
		checkEventLog(v, a, verified)
	}

	if first != nil {
		v.Clock = ClockInfo{Clock: first.Clock, ResetCount: first.ResetCount, RestartCount: first.RestartCount, Safe: first.Safe}
		switch {
		case prev == nil:
			v.add(CheckClock, "", true, "", "no previous quote")
		case prev.ResetCount != v.Clock.ResetCount || prev.RestartCount != v.Clock.RestartCount:
			v.Rebooted = true
			v.add(CheckClock, "", true, "", "TPM reset or restarted since the previous quote")
		case v.Clock.Clock <= prev.Clock:
			v.add(CheckClock, "", false, "TPM clock went backwards (replayed or rolled-back quote)",
				fmt.Sprintf("clock %d, previous %d", v.Clock.Clock, prev.Clock))
		default:
			v.add(CheckClock, "", true, "", fmt.Sprintf("clock %d, previous %d", v.Clock.Clock, prev.Clock))
		}
	}

	v.Verified = len(v.Reasons) == 0
	return v
}

// checkBounds returns why a is too large to decode, or "".
func checkBounds(a *evidentv1.Attestation) string {
	switch {
	case len(a.GetQuotes()) > MaxQuotes:
		return fmt.Sprintf("%d quotes (max %d)", len(a.GetQuotes()), MaxQuotes)
	case len(a.GetPcrs()) > MaxPCRValues:
		return fmt.Sprintf("%d PCR values (max %d)", len(a.GetPcrs()), MaxPCRValues)
	case len(a.GetEventLog()) > MaxEventLogSize:
		return fmt.Sprintf("event log of %d bytes (max %d)", len(a.GetEventLog()), MaxEventLogSize)
	}
	seen := map[uint32]bool{}
	for i, q := range a.GetQuotes() {
		if seen[q.GetHashAlg()] {
			return fmt.Sprintf("bank 0x%04x quoted twice", q.GetHashAlg())
		}
		seen[q.GetHashAlg()] = true
		if len(q.GetAttest()) > maxQuotePart || len(q.GetSignature()) > maxQuotePart {
			return fmt.Sprintf("quote %d: %d-byte attest, %d-byte signature (max %d)", i, len(q.GetAttest()), len(q.GetSignature()), maxQuotePart)
		}
	}
	return ""
}

// reportedPCRs converts the reported PCR values, refusing duplicates, unknown
// banks, indices above 23 and values of the wrong size.
func reportedPCRs(in []*evidentv1.PCRValue) (PCRs, error) {
	out := PCRs{}
	for _, p := range in {
		alg := tpm2.TPMAlgID(p.GetHashAlg())
		if p.GetHashAlg() > 0xffff {
			return nil, fmt.Errorf("bank 0x%x", p.GetHashAlg())
		}
		h, err := alg.Hash()
		if err != nil {
			return nil, fmt.Errorf("unknown bank 0x%04x", uint16(alg))
		}
		if p.GetIndex() > 23 {
			return nil, fmt.Errorf("%s PCR %d (max 23)", AlgName(alg), p.GetIndex())
		}
		if len(p.GetDigest()) != h.Size() {
			return nil, fmt.Errorf("%s PCR %d: %d-byte value, want %d", AlgName(alg), p.GetIndex(), len(p.GetDigest()), h.Size())
		}
		if out[alg] == nil {
			out[alg] = map[uint32][]byte{}
		}
		if _, dup := out[alg][p.GetIndex()]; dup {
			return nil, fmt.Errorf("%s PCR %d reported twice", AlgName(alg), p.GetIndex())
		}
		out[alg][p.GetIndex()] = p.GetDigest()
	}
	return out, nil
}

// checkEventLog replays the event log against the verified PCR values of the
// SHA-256 bank (else SHA-1: the banks go-attestation replays) and reads the
// Secure Boot state from the replayed events.
func checkEventLog(v *Verdict, a *evidentv1.Attestation, verified PCRs) {
	log := a.GetEventLog()
	if len(log) == 0 {
		why := clip(a.GetEventLogError())
		if why == "" {
			why = "the agent gave no reason"
		}
		v.EventLog = "missing: " + why
		v.add(CheckEventLog, "", true, "", v.EventLog)
		return
	}
	var bank tpm2.TPMAlgID
	var ch crypto.Hash
	switch {
	case verified[tpm2.TPMAlgSHA256] != nil:
		bank, ch = tpm2.TPMAlgSHA256, crypto.SHA256
	case verified[tpm2.TPMAlgSHA1] != nil:
		bank, ch = tpm2.TPMAlgSHA1, crypto.SHA1
	default:
		v.EventLog = "not checked: no verified SHA-256 or SHA-1 bank to replay against"
		v.add(CheckEventLog, "", false, "event log not checked: no verified SHA-256 or SHA-1 PCR bank", v.EventLog)
		return
	}
	el, err := parseEventLog(log)
	if err != nil {
		v.EventLog = "unparseable: " + err.Error()
		v.add(CheckEventLog, "", false, "event log unparseable: "+err.Error(), v.EventLog)
		return
	}
	var pcrs []gattest.PCR
	for _, p := range quotedPCRs {
		pcrs = append(pcrs, gattest.PCR{Index: int(p), Digest: verified[bank][p], DigestAlg: ch})
	}
	events, err := replay(el, pcrs)
	if err != nil {
		v.EventLog = "does not replay: " + err.Error()
		v.add(CheckEventLog, AlgName(bank), false, "event log does not replay to the quoted PCR values (tampered log or broken platform): "+err.Error(), v.EventLog)
		return
	}
	v.EventLog = "replayed"
	sb, err := secureBoot(events)
	if err != nil {
		v.add(CheckEventLog, AlgName(bank), true, "", fmt.Sprintf("replayed %d events; Secure Boot state unknown: %v", len(events), err))
		return
	}
	v.SecureBoot = sb
	v.add(CheckEventLog, AlgName(bank), true, "", fmt.Sprintf("replayed %d events", len(events)))
}

// parseEventLog, replay and secureBoot call go-attestation on hostile input
// and turn its panics into errors.
func parseEventLog(b []byte) (el *gattest.EventLog, err error) {
	defer func() {
		if r := recover(); r != nil {
			el, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return gattest.ParseEventLog(b)
}

func replay(el *gattest.EventLog, pcrs []gattest.PCR) (ev []gattest.Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			ev, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	ev, err = el.Verify(pcrs)
	var re gattest.ReplayError
	if errors.As(err, &re) {
		// ReplayError's message lists every event: keep the PCRs.
		return nil, fmt.Errorf("PCRs %v do not match the log", re.InvalidPCRs)
	}
	return ev, err
}

func secureBoot(events []gattest.Event) (sb *SecureBoot, err error) {
	defer func() {
		if r := recover(); r != nil {
			sb, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	st, err := gattest.ParseSecurebootState(events)
	if err != nil {
		return nil, err
	}
	return &SecureBoot{
		Enabled:               st.Enabled,
		PlatformKeys:          subjects(st.PlatformKeys),
		ExchangeKeys:          subjects(st.ExchangeKeys),
		PermittedKeys:         subjects(st.PermittedKeys),
		ForbiddenKeys:         subjects(st.ForbiddenKeys),
		ForbiddenHashes:       len(st.ForbiddenHashes),
		PreSeparatorAuthority: subjects(st.PreSeparatorAuthority),
		Authorities:           subjects(st.PostSeparatorAuthority),
		DMAProtectionDisabled: st.DMAProtectionDisabled,
	}, nil
}

func subjects(certs []x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.String())
	}
	sort.Strings(out)
	return out
}

// clip bounds agent-supplied text and makes it valid UTF-8.
func clip(s string) string {
	if len(s) > maxText {
		s = s[:maxText] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
