//go:build cgo

package attest

// Tests against go-tpm-tools' TPM simulator, driven through go-attestation as
// the agent drives a real TPM. simulator.Get allows one simulator per
// process, so every test here shares one (simTPM) and none runs in parallel.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	gattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/evident-dev/evident/internal/quotedata"
	"github.com/evident-dev/evident/internal/tpmtest"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// simEnv is the shared simulated TPM with an EK and an AK.
type simEnv struct {
	sim    *simulator.Simulator
	tpm    *gattest.TPM
	ekPub  []byte // PKIX DER
	ak     *gattest.AK
	akBlob []byte
	id     *evidentv1.TPMIdentity
	booted string // event log extended into the PCRs since the last reset
}

var (
	simOnce sync.Once
	simE    *simEnv
	simErr  error
)

// simTPM returns the shared simulator, booted (reset and extended) with the
// recorded event log logName unless it already is.
func simTPM(t testing.TB, logName string) *simEnv {
	t.Helper()
	simOnce.Do(func() {
		sim, err := simulator.Get()
		if err != nil {
			simErr = err
			return
		}
		e := &simEnv{sim: sim, tpm: gattest.InjectSimulatedTPMForTest(sim)}
		eks, err := e.tpm.EKs()
		if err != nil || len(eks) == 0 {
			simErr = errors.Join(errors.New("no EK"), err)
			return
		}
		if e.ekPub, err = x509.MarshalPKIXPublicKey(eks[0].Public); err != nil {
			simErr = err
			return
		}
		if e.ak, err = e.tpm.NewAK(nil); err != nil {
			simErr = err
			return
		}
		if e.akBlob, err = e.ak.Marshal(); err != nil {
			simErr = err
			return
		}
		e.id = identity(e.ekPub, nil, e.ak.AttestationParameters())
		simE = e
	})
	if simErr != nil {
		t.Fatalf("simulator: %v", simErr)
	}
	if simE.booted != logName {
		reboot(t, simE, logName)
	}
	return simE
}

// reboot power-cycles the simulator (PCRs cleared, reset count incremented),
// extends the recorded log logName into the PCRs and reloads the AK.
func reboot(t testing.TB, e *simEnv, logName string) {
	t.Helper()
	if err := e.sim.Reset(); err != nil {
		t.Fatalf("reset simulator: %v", err)
	}
	tpmtest.ExtendEventLog(t, transport.FromReadWriter(e.sim), tpmtest.RecordedEventLog(t, logName))
	ak, err := e.tpm.LoadAK(e.akBlob)
	if err != nil {
		t.Fatalf("reload AK: %v", err)
	}
	e.ak = ak
	e.booted = logName
}

func identity(ekPub, ekCert []byte, p gattest.AttestationParameters) *evidentv1.TPMIdentity {
	return &evidentv1.TPMIdentity{EkPub: ekPub, EkCert: ekCert, Ak: &evidentv1.AKParameters{
		Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature,
	}}
}

// quote builds an Attestation as the agent does: a quote of PCRs 0-7 of the
// SHA-256 bank over quotedata.Compute(nonce, report), the PCR values and log.
func quote(t testing.TB, e *simEnv, ak *gattest.AK, nonce, report, log []byte) *evidentv1.Attestation {
	t.Helper()
	return quoteBank(t, e, ak, gattest.HashSHA256, nonce, report, log)
}

func quoteBank(t testing.TB, e *simEnv, ak *gattest.AK, bank gattest.HashAlg, nonce, report, log []byte) *evidentv1.Attestation {
	t.Helper()
	q, err := ak.QuotePCRs(e.tpm, quotedata.Compute(nonce, report), bank, []int{0, 1, 2, 3, 4, 5, 6, 7})
	if err != nil {
		t.Fatalf("quote: %v", err)
	}
	pcrs, err := e.tpm.PCRs(bank)
	if err != nil {
		t.Fatalf("read PCRs: %v", err)
	}
	a := &evidentv1.Attestation{
		Nonce: nonce, Report: report, EventLog: log,
		Quotes: []*evidentv1.Quote{{HashAlg: uint32(bank), Attest: q.Quote, Signature: q.Signature}},
	}
	for _, p := range pcrs {
		a.Pcrs = append(a.Pcrs, &evidentv1.PCRValue{HashAlg: uint32(bank), Index: uint32(p.Index), Digest: p.Digest})
	}
	return a
}

func newNonce(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// wantReason asserts v is not verified, that check failed and a reason
// contains want.
func wantReason(t *testing.T, v *Verdict, check, want string) {
	t.Helper()
	if v.Verified {
		t.Fatalf("verified, want failure of %q: %+v", check, v)
	}
	if len(failed(v, check)) == 0 {
		t.Errorf("check %q did not fail; checks %+v", check, v.Checks)
	}
	for _, r := range v.Reasons {
		if strings.Contains(r, want) {
			return
		}
	}
	t.Errorf("reasons %q lack %q", v.Reasons, want)
}

func akPublic(e *simEnv) []byte { return e.ak.AttestationParameters().Public }

func TestVerifyAttestationValid(t *testing.T) {
	e := simTPM(t, tpmtest.SecureBootLog)
	nonce, report := newNonce(t, 32), []byte("report-1")
	log := tpmtest.RecordedEventLog(t, tpmtest.SecureBootLog)
	v := VerifyAttestation(akPublic(e), nonce, quote(t, e, e.ak, nonce, report, log), nil)
	if !v.Verified || len(v.Reasons) != 0 {
		t.Fatalf("not verified: %q", v.Reasons)
	}
	if v.EventLog != "replayed" {
		t.Errorf("EventLog = %q", v.EventLog)
	}
	if v.SecureBoot == nil || !v.SecureBoot.Enabled {
		t.Fatalf("SecureBoot = %+v, want enabled", v.SecureBoot)
	}
	if len(v.SecureBoot.PlatformKeys) == 0 || len(v.SecureBoot.Authorities) == 0 {
		t.Errorf("SecureBoot lacks keys or authorities: %+v", v.SecureBoot)
	}
	if len(v.Banks) != 1 || v.Banks[0] != "sha256" || len(v.PCRs["sha256"]) != 8 {
		t.Errorf("Banks %v, PCRs %v", v.Banks, v.PCRs)
	}
	var names []string
	for _, c := range v.Checks {
		names = append(names, c.Name)
	}
	if got, want := strings.Join(names, ","), "agent,input,nonce,signature,qualifying_data,pcr_digest,banks,event_log,clock"; got != want {
		t.Errorf("checks %s, want %s", got, want)
	}
	if v.Clock.Clock == 0 || v.Rebooted {
		t.Errorf("clock %+v, rebooted %v", v.Clock, v.Rebooted)
	}
	if rh := sha256.Sum256(report); v.ReportSHA256 != hex.EncodeToString(rh[:]) {
		t.Errorf("ReportSHA256 %q", v.ReportSHA256)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"verified":true`, `"event_log":"replayed"`, `"secure_boot":{"enabled":true`, `"pcrs":{"sha256":{"0":"`, `"report_sha256":"`} {
		if !bytes.Contains(js, []byte(k)) {
			t.Errorf("JSON lacks %s: %s", k, js)
		}
	}
}

func TestVerifyAttestationNoSecureBoot(t *testing.T) {
	e := simTPM(t, tpmtest.NoSecureBootLog)
	nonce := newNonce(t, 32)
	log := tpmtest.RecordedEventLog(t, tpmtest.NoSecureBootLog)
	v := VerifyAttestation(akPublic(e), nonce, quote(t, e, e.ak, nonce, []byte("r"), log), nil)
	if !v.Verified {
		t.Fatalf("not verified: %q", v.Reasons)
	}
	if v.SecureBoot == nil || v.SecureBoot.Enabled {
		t.Fatalf("SecureBoot = %+v, want present and disabled", v.SecureBoot)
	}
}

func TestVerifyAttestationFailures(t *testing.T) {
	e := simTPM(t, tpmtest.SecureBootLog)
	log := tpmtest.RecordedEventLog(t, tpmtest.SecureBootLog)
	otherLog := tpmtest.RecordedEventLog(t, tpmtest.NoSecureBootLog)
	ak2, err := e.tpm.NewAK(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ak2.Close(e.tpm)
	nonce, report := newNonce(t, 32), []byte("report")

	// tamperedDigest flips a byte of the SHA-256 digest of the first PCR 7
	// event in the raw log.
	tamperedDigest := func() []byte {
		el, err := gattest.ParseEventLog(log)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range el.Events(gattest.HashSHA256) {
			if ev.Index == 7 && ev.Type != 0x3 {
				i := bytes.Index(log, ev.Digest)
				if i < 0 {
					t.Fatal("digest not found in log")
				}
				return flip(log, i+3)
			}
		}
		t.Fatal("no PCR 7 event")
		return nil
	}()

	tests := []struct {
		name   string
		issued []byte // nonce the server issued; nil = nonce
		a      func() *evidentv1.Attestation
		check  string
		reason string
	}{
		{"replayed quote, new nonce", nil, func() *evidentv1.Attestation {
			a := quote(t, e, e.ak, newNonce(t, 32), report, log) // quote for an old nonce
			a.Nonce = nonce                                      // presented with the new one
			return a
		}, CheckQualifyingData, "qualifying data does not bind the issued nonce"},
		{"nonce not the one issued", newNonce(t, 32), func() *evidentv1.Attestation {
			return quote(t, e, e.ak, nonce, report, log)
		}, CheckNonce, "attestation nonce is not the nonce issued"},
		{"quote by another AK", nil, func() *evidentv1.Attestation {
			return quote(t, e, ak2, nonce, report, log)
		}, CheckSignature, "quote signature does not verify with the enrolled AK"},
		{"altered PCR value", nil, func() *evidentv1.Attestation {
			a := quote(t, e, e.ak, nonce, report, log)
			a.Pcrs[3].Digest = flip(a.Pcrs[3].Digest, 0)
			return a
		}, CheckPCRDigest, "quoted PCR digest does not match the reported PCR values"},
		{"altered event digest", nil, func() *evidentv1.Attestation {
			return quote(t, e, e.ak, nonce, report, tamperedDigest)
		}, CheckEventLog, "event log does not replay to the quoted PCR values"},
		{"event log of another machine", nil, func() *evidentv1.Attestation {
			return quote(t, e, e.ak, nonce, report, otherLog)
		}, CheckEventLog, "event log does not replay to the quoted PCR values"},
		{"garbage event log", nil, func() *evidentv1.Attestation {
			return quote(t, e, e.ak, nonce, report, []byte("not an event log"))
		}, CheckEventLog, "event log unparseable"},
		{"changed report", nil, func() *evidentv1.Attestation {
			a := quote(t, e, e.ak, nonce, report, log)
			a.Report = []byte("report, edited")
			return a
		}, CheckQualifyingData, "qualifying data does not bind the issued nonce and this report"},
		{"agent error", nil, func() *evidentv1.Attestation {
			return &evidentv1.Attestation{Nonce: nonce, Report: report, Error: "TPM busy"}
		}, CheckAgent, "agent could not attest: TPM busy"},
		{"short nonce", []byte("12345678"), func() *evidentv1.Attestation {
			return quote(t, e, e.ak, []byte("12345678"), report, log)
		}, CheckNonce, "issued nonce too short"},
		{"no quotes", nil, func() *evidentv1.Attestation {
			a := quote(t, e, e.ak, nonce, report, log)
			a.Quotes = nil
			return a
		}, CheckSignature, "attestation has no quote"},
		{"quote of another bank label", nil, func() *evidentv1.Attestation {
			a := quote(t, e, e.ak, nonce, report, log)
			a.Quotes[0].HashAlg = uint32(tpm2.TPMAlgSHA1)
			return a
		}, CheckPCRDigest, "quoted PCR digest does not match"},
		{"SHA-1 bank only", nil, func() *evidentv1.Attestation {
			return quoteBank(t, e, e.ak, gattest.HashSHA1, nonce, report, log)
		}, CheckBanks, "no SHA-256 or stronger PCR bank quoted"},
		{"too many PCR values", nil, func() *evidentv1.Attestation {
			a := quote(t, e, e.ak, nonce, report, log)
			for len(a.Pcrs) <= MaxPCRValues {
				a.Pcrs = append(a.Pcrs, a.Pcrs[0])
			}
			return a
		}, CheckInput, "PCR values (max 64)"},
		{"duplicate PCR value", nil, func() *evidentv1.Attestation {
			a := quote(t, e, e.ak, nonce, report, log)
			a.Pcrs = append(a.Pcrs, a.Pcrs[0])
			return a
		}, CheckInput, "reported twice"},
		{"oversize event log", nil, func() *evidentv1.Attestation {
			return quote(t, e, e.ak, nonce, report, make([]byte, MaxEventLogSize+1))
		}, CheckInput, "event log of 1048577 bytes"},
		{"truncated signature", nil, func() *evidentv1.Attestation {
			a := quote(t, e, e.ak, nonce, report, log)
			a.Quotes[0].Signature = a.Quotes[0].Signature[:10]
			return a
		}, CheckSignature, "not a valid TPM quote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			issued := tc.issued
			if issued == nil {
				issued = nonce
			}
			v := VerifyAttestation(akPublic(e), issued, tc.a(), nil)
			t.Logf("reasons %q, event log %q", v.Reasons, v.EventLog)
			wantReason(t, v, tc.check, tc.reason)
			if tc.check == CheckEventLog && v.SecureBoot != nil {
				t.Errorf("SecureBoot from an unreplayed log: %+v", v.SecureBoot)
			}
		})
	}
}

func TestVerifyAttestationTamperedEventData(t *testing.T) {
	// Changing an event's data (not its digest) keeps the replay intact, but
	// the Secure Boot state must then not be read from it.
	e := simTPM(t, tpmtest.SecureBootLog)
	log := tpmtest.RecordedEventLog(t, tpmtest.SecureBootLog)
	el, err := gattest.ParseEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	var tampered []byte
	for _, ev := range el.Events(gattest.HashSHA256) {
		if ev.Index == 7 && len(ev.Data) > 40 {
			i := bytes.Index(log, ev.Data)
			tampered = flip(log, i+len(ev.Data)-1)
			break
		}
	}
	if tampered == nil {
		t.Fatal("no PCR 7 event with data")
	}
	nonce := newNonce(t, 32)
	v := VerifyAttestation(akPublic(e), nonce, quote(t, e, e.ak, nonce, nil, tampered), nil)
	if v.SecureBoot != nil {
		t.Errorf("SecureBoot read from tampered event data: %+v", v.SecureBoot)
	}
	if v.EventLog != "replayed" {
		t.Errorf("EventLog = %q", v.EventLog)
	}
	if c := v.Checks[len(v.Checks)-2]; c.Name != CheckEventLog || !strings.Contains(c.Detail, "Secure Boot state unknown") {
		t.Errorf("event_log check %+v", c)
	}
}

func TestVerifyAttestationMissingEventLog(t *testing.T) {
	e := simTPM(t, tpmtest.SecureBootLog)
	nonce := newNonce(t, 32)
	a := quote(t, e, e.ak, nonce, []byte("r"), nil)
	a.EventLogError = "open /sys/kernel/security/tpm0/binary_bios_measurements: permission denied"
	v := VerifyAttestation(akPublic(e), nonce, a, nil)
	if !v.Verified {
		t.Fatalf("not verified: %q", v.Reasons)
	}
	if v.EventLog != "missing: "+a.EventLogError || v.SecureBoot != nil {
		t.Errorf("EventLog %q, SecureBoot %+v", v.EventLog, v.SecureBoot)
	}
}

func TestVerifyAttestationClock(t *testing.T) {
	e := simTPM(t, tpmtest.SecureBootLog)
	log := tpmtest.RecordedEventLog(t, tpmtest.SecureBootLog)
	n1, n2 := newNonce(t, 32), newNonce(t, 32)
	a1 := quote(t, e, e.ak, n1, []byte("1"), log)
	v1 := VerifyAttestation(akPublic(e), n1, a1, nil)
	// The simulator's clock counts host milliseconds: quote until it moved.
	var a2 *evidentv1.Attestation
	var v2 *Verdict
	for i := 0; i < 10000 && (v2 == nil || v2.Clock.Clock <= v1.Clock.Clock); i++ {
		a2 = quote(t, e, e.ak, n2, []byte("2"), log)
		v2 = VerifyAttestation(akPublic(e), n2, a2, nil)
	}
	if !v2.Verified || v2.Clock.Clock <= v1.Clock.Clock {
		t.Fatalf("second quote: %q, clock %d after %d", v2.Reasons, v2.Clock.Clock, v1.Clock.Clock)
	}

	t.Run("forward", func(t *testing.T) {
		v2b := VerifyAttestation(akPublic(e), n2, a2, &v1.Clock)
		if !v2b.Verified || v2b.Rebooted {
			t.Errorf("verified %v (%q), rebooted %v", v2b.Verified, v2b.Reasons, v2b.Rebooted)
		}
	})
	t.Run("backwards", func(t *testing.T) {
		// The older quote presented after the newer one was accepted.
		v := VerifyAttestation(akPublic(e), n1, a1, &v2.Clock)
		wantReason(t, v, CheckClock, "TPM clock went backwards (replayed or rolled-back quote)")
	})
	t.Run("same quote twice", func(t *testing.T) {
		v := VerifyAttestation(akPublic(e), n2, a2, &v2.Clock)
		wantReason(t, v, CheckClock, "TPM clock went backwards")
	})
	t.Run("rebooted", func(t *testing.T) {
		reboot(t, e, tpmtest.SecureBootLog)
		n3 := newNonce(t, 32)
		v := VerifyAttestation(akPublic(e), n3, quote(t, e, e.ak, n3, []byte("3"), log), &v2.Clock)
		if !v.Verified || !v.Rebooted {
			t.Errorf("verified %v (%q), rebooted %v; clock %+v after %+v", v.Verified, v.Reasons, v.Rebooted, v.Clock, v2.Clock)
		}
	})
}

// testCA is a certificate authority for EK certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t testing.TB, name string, parent *testCA) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name, Organization: []string{"Test TPM Maker"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{c, key}
}

// tcgSAN is the critical subjectAltName of TCG EK certificates: a
// directoryName with tcg-at-tpmManufacturer, tcg-at-tpmModel and
// tcg-at-tpmVersion (TCG EK Credential Profile 3.2.9).
func tcgSAN(t testing.TB) pkix.Extension {
	t.Helper()
	name, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:53494D55"}},
		{{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: "SIMULATOR"}},
		{{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 3}, Value: "id:00000001"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSAN, Critical: true, Value: san}
}

// ekCert issues an EK certificate for ekPub (PKIX DER) as TPM makers do:
// empty subject, critical TCG SAN, tcg-kp-EKCertificate EKU, keyEncipherment;
// returned with trailing padding as read from a larger NV index.
func ekCert(t testing.TB, ca *testCA, ekPub []byte) []byte {
	t.Helper()
	pub, err := x509.ParsePKIXPublicKey(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:           x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		ExtraExtensions:    []pkix.Extension{tcgSAN(t)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return append(der, make([]byte, 64)...)
}

func TestEKCertificateNeedsGoAttestation(t *testing.T) {
	// The test EK certificate is shaped like real ones in the two ways that
	// defeat crypto/x509 alone; CheckTPMIdentity must handle both.
	e := simTPM(t, tpmtest.SecureBootLog)
	root := newCA(t, "EK Root", nil)
	raw := ekCert(t, root, e.ekPub)
	if _, err := x509.ParseCertificate(raw); err == nil {
		t.Error("crypto/x509 parsed an EK certificate with NV padding")
	}
	c, err := gattest.ParseEKCertificate(raw)
	if err != nil {
		t.Fatalf("go-attestation: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	_, err = c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if !errors.As(err, new(x509.UnhandledCriticalExtension)) {
		t.Errorf("crypto/x509 Verify = %v, want UnhandledCriticalExtension (the critical TCG SAN)", err)
	}
}

func TestCheckTPMIdentity(t *testing.T) {
	e := simTPM(t, tpmtest.SecureBootLog)
	root := newCA(t, "EK Root", nil)
	inter := newCA(t, "EK Intermediate", root)
	otherRoot := newCA(t, "Unknown Root", nil)
	pol := &EKPolicy{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool()}
	pol.Roots.AddCert(root.cert)
	pol.Intermediates.AddCert(inter.cert)
	params := e.ak.AttestationParameters()

	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _ := x509.MarshalPKIXPublicKey(&otherKey.PublicKey)

	// withPublic returns the identity with the AK's TPMT_PUBLIC edited:
	// objectAttributes is the big-endian uint32 at offset 4.
	withAttr := func(byteOff int, mask byte) *evidentv1.TPMIdentity {
		p := params
		p.Public = bytes.Clone(p.Public)
		p.Public[4+byteOff] ^= mask
		return identity(e.ekPub, ekCert(t, root, e.ekPub), p)
	}
	withSig := func() *evidentv1.TPMIdentity {
		p := params
		p.CreateSignature = flip(p.CreateSignature, -1)
		return identity(e.ekPub, ekCert(t, root, e.ekPub), p)
	}
	allow := func(ekPub []byte) *EKPolicy {
		_, canon, err := parseEKPublic(ekPub)
		if err != nil {
			t.Fatal(err)
		}
		return &EKPolicy{Roots: pol.Roots, AllowedEKs: map[[32]byte]bool{sha256.Sum256(canon): true}}
	}

	tests := []struct {
		name    string
		id      *evidentv1.TPMIdentity
		pol     *EKPolicy
		wantErr error
		errHas  string
		trust   string
	}{
		{"cert chains to root", identity(e.ekPub, ekCert(t, root, e.ekPub), params), pol, nil, "", EKTrustCertificate},
		{"cert via intermediate", identity(e.ekPub, ekCert(t, inter, e.ekPub), params), pol, nil, "", EKTrustCertificate},
		{"cert from unknown root", identity(e.ekPub, ekCert(t, otherRoot, e.ekPub), params), pol, ErrEKUntrusted, "does not chain", ""},
		{"cert from unknown root, EK allowlisted", identity(e.ekPub, ekCert(t, otherRoot, e.ekPub), params), allow(e.ekPub), nil, "", EKTrustAllowlist},
		{"no cert, allowlisted", identity(e.ekPub, nil, params), allow(e.ekPub), nil, "", EKTrustAllowlist},
		{"no cert, not allowlisted", identity(e.ekPub, nil, params), pol, ErrEKUntrusted, "not allowlisted", ""},
		{"no roots, no allowlist", identity(e.ekPub, ekCert(t, root, e.ekPub), params), nil, ErrEKUntrusted, "no manufacturer roots", ""},
		{"cert for another key", identity(e.ekPub, ekCert(t, root, otherPub), params), allow(e.ekPub), ErrEKUntrusted, "another key", ""},
		{"garbage cert", identity(e.ekPub, []byte("garbage"), params), pol, ErrMalformed, "EK certificate", ""},
		{"garbage EK", identity([]byte("garbage"), nil, params), pol, ErrMalformed, "EK public key", ""},
		{"AK not fixedTPM", withAttr(3, 0x02), pol, ErrAKAttributes, "lacks fixedTPM", ""},
		{"AK not fixedParent", withAttr(3, 0x10), pol, ErrAKAttributes, "lacks fixedParent", ""},
		{"AK not restricted", withAttr(1, 0x01), pol, ErrAKAttributes, "lacks restricted", ""},
		{"AK also decrypts", withAttr(1, 0x02), pol, ErrAKAttributes, "decrypt", ""},
		{"AK creation signature altered", withSig(), pol, ErrAKCreation, "verify", ""},
		{"AK public garbage", identity(e.ekPub, nil, gattest.AttestationParameters{Public: []byte{1, 2, 3}}), allow(e.ekPub), ErrMalformed, "TPMT_PUBLIC", ""},
	}
	sentinels := []error{ErrMalformed, ErrEKUntrusted, ErrAKAttributes, ErrAKCreation}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckTPMIdentity(tc.id, tc.pol)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if got.EKTrust != tc.trust || !bytes.Equal(got.AKPublic, tc.id.Ak.Public) {
					t.Errorf("got %+v", got)
				}
				if tc.trust == EKTrustCertificate && (got.EKCertSerial != "4242" || !strings.Contains(got.EKCertIssuer, "EK")) {
					t.Errorf("cert fields %+v", got)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %v, want %v containing %q", err, tc.wantErr, tc.errHas)
			}
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("error wraps %d sentinels: %v", n, err)
			}
		})
	}
}

func TestNewActivation(t *testing.T) {
	e := simTPM(t, tpmtest.SecureBootLog)
	secret, ch, err := NewActivation(e.id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.ak.ActivateCredential(e.tpm, gattest.EncryptedCredential{Credential: ch.Credential, Secret: ch.Secret})
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if !bytes.Equal(got, secret) || len(secret) < 16 {
		t.Errorf("recovered %x, want %x", got, secret)
	}

	// A challenge for another AK's parameters is not recoverable with ours.
	ak2, err := e.tpm.NewAK(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ak2.Close(e.tpm)
	secret2, ch2, err := NewActivation(identity(e.ekPub, nil, ak2.AttestationParameters()))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.ak.ActivateCredential(e.tpm, gattest.EncryptedCredential{Credential: ch2.Credential, Secret: ch2.Secret}); err == nil && bytes.Equal(got, secret2) {
		t.Error("another AK's challenge activated with our AK")
	}

	if _, _, err := NewActivation(identity([]byte("x"), nil, e.ak.AttestationParameters())); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage EK: %v", err)
	}
}

func BenchmarkVerifyAttestation(b *testing.B) {
	e := simTPM(b, tpmtest.SecureBootLog)
	nonce := newNonce(b, 32)
	a := quote(b, e, e.ak, nonce, bytes.Repeat([]byte("r"), 4096), tpmtest.RecordedEventLog(b, tpmtest.SecureBootLog))
	akPub := akPublic(e)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v := VerifyAttestation(akPub, nonce, a, nil); !v.Verified || v.SecureBoot == nil {
			b.Fatalf("not verified: %q", v.Reasons)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

func TestECDSAAK(t *testing.T) {
	e := simTPM(t, tpmtest.SecureBootLog)
	ak, err := e.tpm.NewAK(&gattest.AKConfig{Algorithm: gattest.ECDSA})
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close(e.tpm)
	_, canon, err := parseEKPublic(e.ekPub)
	if err != nil {
		t.Fatal(err)
	}
	pol := &EKPolicy{AllowedEKs: map[[32]byte]bool{sha256.Sum256(canon): true}}
	enrolled, err := CheckTPMIdentity(identity(e.ekPub, nil, ak.AttestationParameters()), pol)
	if err != nil {
		t.Fatalf("CheckTPMIdentity: %v", err)
	}
	nonce := newNonce(t, 32)
	v := VerifyAttestation(enrolled.AKPublic, nonce, quote(t, e, ak, nonce, []byte("r"), tpmtest.RecordedEventLog(t, tpmtest.SecureBootLog)), nil)
	if !v.Verified || v.SecureBoot == nil {
		t.Fatalf("not verified: %q", v.Reasons)
	}
}
