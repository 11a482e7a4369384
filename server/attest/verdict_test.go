package attest

// Tests of VerifyAttestation that need no TPM: a software "TPM" (an RSA key
// with an AK's TPMT_PUBLIC, PCRs computed by replaying a recorded event log)
// builds attestations in the wire format, so these also run without cgo and
// seed the fuzz target.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"sync"
	"testing"

	gattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"

	"github.com/evident-dev/evident/internal/quotedata"
	"github.com/evident-dev/evident/internal/tpmtest"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// softTPM signs quotes like a TPM with an AK, over PCRs replayed from log.
type softTPM struct {
	key      *rsa.PrivateKey
	akPublic []byte // TPMT_PUBLIC
	pcrs     [24][]byte
	log      []byte
	clock    uint64
}

var (
	softOnce sync.Once
	soft     *softTPM
)

func newSoftTPM(tb testing.TB) *softTPM {
	tb.Helper()
	softOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			tb.Fatal(err)
		}
		pub := tpm2.TPMTPublic{
			Type:    tpm2.TPMAlgRSA,
			NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{
				FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
				NoDA: true, Restricted: true, SignEncrypt: true,
			},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Scheme: tpm2.TPMTRSAScheme{
					Scheme:  tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: key.N.Bytes()}),
		}
		s := &softTPM{key: key, akPublic: tpm2.Marshal(pub), clock: 1000}
		s.log = tpmtest.RecordedEventLog(tb, tpmtest.SecureBootLog)
		el, err := gattest.ParseEventLog(s.log)
		if err != nil {
			tb.Fatal(err)
		}
		for i := range s.pcrs {
			s.pcrs[i] = make([]byte, sha256.Size)
		}
		for _, e := range el.Events(gattest.HashSHA256) {
			if e.Type == 0x3 || e.Index < 0 || e.Index > 23 {
				continue
			}
			h := sha256.New()
			h.Write(s.pcrs[e.Index])
			h.Write(e.Digest)
			s.pcrs[e.Index] = h.Sum(nil)
		}
		soft = s
	})
	if soft == nil {
		tb.Fatal("software TPM setup failed")
	}
	return soft
}

// attest returns an attestation over PCRs 0-7 of the SHA-256 bank.
func (s *softTPM) attest(tb testing.TB, nonce, report []byte) *evidentv1.Attestation {
	tb.Helper()
	s.clock++
	d := sha256.New()
	for i := 0; i < 8; i++ {
		d.Write(s.pcrs[i])
	}
	att := tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: []byte{0, 0x0b, 1, 2, 3}},
		ExtraData:       tpm2.TPM2BData{Buffer: quotedata.Compute(nonce, report)},
		ClockInfo:       tpm2.TPMSClockInfo{Clock: s.clock, ResetCount: 3, RestartCount: 0, Safe: true},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0xff, 0, 0}}}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: d.Sum(nil)},
		}),
	}
	msg := tpm2.Marshal(att)
	h := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, h[:])
	if err != nil {
		tb.Fatal(err)
	}
	tsig := tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA,
		&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}})}
	a := &evidentv1.Attestation{
		Nonce: nonce, Report: report, EventLog: s.log,
		Quotes: []*evidentv1.Quote{{HashAlg: uint32(tpm2.TPMAlgSHA256), Attest: msg, Signature: tpm2.Marshal(tsig)}},
	}
	for i := 0; i < 24; i++ {
		a.Pcrs = append(a.Pcrs, &evidentv1.PCRValue{HashAlg: uint32(tpm2.TPMAlgSHA256), Index: uint32(i), Digest: s.pcrs[i]})
	}
	return a
}

// failed returns the checks named name that failed.
func failed(v *Verdict, name string) []Check {
	var out []Check
	for _, c := range v.Checks {
		if c.Name == name && !c.OK {
			out = append(out, c)
		}
	}
	return out
}

func TestVerifyAttestationSoftware(t *testing.T) {
	s := newSoftTPM(t)
	nonce := []byte("0123456789abcdef")
	a := s.attest(t, nonce, []byte("report"))
	v := VerifyAttestation(s.akPublic, nonce, a, nil)
	if !v.Verified || v.EventLog != "replayed" || v.SecureBoot == nil || !v.SecureBoot.Enabled {
		t.Fatalf("verified %v, reasons %q, event log %q, secure boot %+v", v.Verified, v.Reasons, v.EventLog, v.SecureBoot)
	}

	// The enrolled AK decides, whatever the message carries.
	other := *s
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other.key = k2
	if v := VerifyAttestation(s.akPublic, nonce, other.attest(t, nonce, []byte("report")), nil); v.Verified ||
		len(failed(v, CheckSignature)) == 0 {
		t.Errorf("quote by another key verified: %+v", v)
	}

	// An enrolled AK that is no AK is refused without decoding further.
	bad := append([]byte(nil), s.akPublic...)
	bad[7] ^= 0x02 // fixedTPM
	if v := VerifyAttestation(bad, nonce, a, nil); v.Verified || len(failed(v, CheckInput)) == 0 ||
		!strings.Contains(strings.Join(v.Reasons, ";"), "fixedTPM") {
		t.Errorf("non-fixedTPM enrolled AK: %+v", v)
	}

	if v := VerifyAttestation(s.akPublic, nonce, nil, nil); v.Verified {
		t.Error("nil attestation verified")
	}
	big := s.attest(t, nonce, nil)
	for len(big.Quotes) <= MaxQuotes {
		big.Quotes = append(big.Quotes, &evidentv1.Quote{HashAlg: uint32(len(big.Quotes))})
	}
	if v := VerifyAttestation(s.akPublic, nonce, big, nil); v.Verified || len(failed(v, CheckInput)) == 0 {
		t.Errorf("%d quotes: %+v", len(big.Quotes), v.Reasons)
	}
}

// FuzzVerifyAttestation feeds hostile quotes, signatures, PCR values and
// event logs to VerifyAttestation: it must never panic (not even into its
// own recover), and a verdict is verified exactly when it has no reason.
func FuzzVerifyAttestation(f *testing.F) {
	s := newSoftTPM(f)
	nonce := []byte("0123456789abcdef")
	good := s.attest(f, nonce, []byte("r"))
	pcrBlob := func(a *evidentv1.Attestation) []byte {
		var b []byte
		for _, p := range a.Pcrs {
			b = binary.BigEndian.AppendUint16(b, uint16(p.HashAlg))
			b = append(b, byte(p.Index), byte(len(p.Digest)))
			b = append(b, p.Digest...)
		}
		return b
	}
	q := good.Quotes[0]
	f.Add(uint32(tpm2.TPMAlgSHA256), q.Attest, q.Signature, pcrBlob(good), good.EventLog, false)
	f.Add(uint32(tpm2.TPMAlgSHA256), q.Attest, q.Signature, pcrBlob(good), good.EventLog[:len(good.EventLog)/3], false)
	f.Add(uint32(tpm2.TPMAlgSHA1), q.Attest[:40], q.Signature[:9], pcrBlob(good)[:70], []byte{}, true)
	f.Add(uint32(0), []byte{}, []byte{}, []byte{}, []byte{0, 0, 0, 0, 3, 0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, alg uint32, msg, sig, pcrs, log []byte, ecc bool) {
		a := &evidentv1.Attestation{Nonce: nonce, Report: []byte("r"), EventLog: log,
			Quotes: []*evidentv1.Quote{{HashAlg: alg, Attest: msg, Signature: sig}}}
		for len(pcrs) >= 4 {
			n := int(pcrs[3])
			if len(pcrs) < 4+n {
				break
			}
			a.Pcrs = append(a.Pcrs, &evidentv1.PCRValue{HashAlg: uint32(binary.BigEndian.Uint16(pcrs)), Index: uint32(pcrs[2]), Digest: pcrs[4 : 4+n]})
			pcrs = pcrs[4+n:]
		}
		ak := s.akPublic
		if ecc {
			ak = msg // hostile enrolled key too
		}
		v := VerifyAttestation(ak, nonce, a, nil)
		if v.Verified != (len(v.Reasons) == 0) {
			t.Fatalf("verified %v with reasons %q", v.Verified, v.Reasons)
		}
		for _, c := range v.Checks {
			if strings.Contains(c.Detail, "panic in VerifyAttestation") {
				t.Fatalf("panic: %s", c.Detail)
			}
		}
	})
}
