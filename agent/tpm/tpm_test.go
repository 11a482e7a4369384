package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/evident-dev/evident/agent/tpm"
	"github.com/evident-dev/evident/internal/quotedata"
	"github.com/evident-dev/evident/internal/swtpmtest"
	"github.com/evident-dev/evident/internal/tpmtest"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		spec    string
		wantNoT bool // errors.Is(err, ErrNoTPM)
	}{
		{"bogus", true},
		{"relative/dev/tpm0", true},
		{"swtpm:nohostport", true},
		{"swtpm::2321", true},
		{"unix:", true},
		{"unix:/nonexistent/swtpm.sock", true},
		{"/nonexistent/tpmrm0", true},
		// Something listens nowhere on port 1: the spec is fine, the TPM
		// is not there now.
		{"swtpm:127.0.0.1:1", false},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			start := time.Now()
			d, err := tpm.Open(tc.spec, "")
			if err == nil {
				d.Close()
				t.Fatalf("Open(%q) succeeded", tc.spec)
			}
			t.Logf("Open(%q): %v", tc.spec, err)
			if got := errors.Is(err, tpm.ErrNoTPM); got != tc.wantNoT {
				t.Errorf("errors.Is(err, ErrNoTPM) = %v, want %v", got, tc.wantNoT)
			}
			if d := time.Since(start); d > tpm.DialTimeout+time.Second {
				t.Errorf("Open took %v", d)
			}
		})
	}
}

// TestOpenPlatformWithoutTPM: on a machine without a TPM the empty spec
// reports ErrNoTPM (the agent then scores "no TPM" instead of failing).
func TestOpenPlatformWithoutTPM(t *testing.T) {
	for _, dev := range []string{"/dev/tpmrm0", "/dev/tpm0"} {
		if _, err := os.Stat(dev); err == nil {
			t.Skipf("this machine has %s", dev)
		}
	}
	d, err := tpm.Open("", "")
	if err == nil {
		d.Close()
		t.Fatal("Open(\"\") succeeded on a machine without a TPM")
	}
	if !errors.Is(err, tpm.ErrNoTPM) {
		t.Errorf("Open(\"\") = %v, want ErrNoTPM", err)
	}
}

// TestRetry: a command answered with TPM_RC_RETRY is sent again until the
// TPM answers something else.
func TestRetry(t *testing.T) {
	retryRsp := rsp(uint32(tpm2.TPMRCRetry))
	okRsp := rsp(0)
	tests := []struct {
		name    string
		retries int
		sends   int
	}{
		{"no retry", 0, 1},
		{"two retries", 2, 3},
		{"five retries", 5, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTPM{retries: tc.retries, retry: retryRsp, ok: okRsp}
			got, err := tpm.Retrying(f).Send([]byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, okRsp) {
				t.Errorf("response %x, want %x", got, okRsp)
			}
			if f.sends != tc.sends {
				t.Errorf("%d sends, want %d", f.sends, tc.sends)
			}
		})
	}
}

func rsp(rc uint32) []byte {
	b := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[6:], rc)
	return b
}

type fakeTPM struct {
	retries, sends int
	retry, ok      []byte
}

func (f *fakeTPM) Send([]byte) ([]byte, error) {
	f.sends++
	if f.sends <= f.retries {
		return f.retry, nil
	}
	return f.ok, nil
}

func (f *fakeTPM) Close() error { return nil }

// TestAKPersists: the first LoadOrCreateAK creates the AK and saves its
// blob (0600); after the TPM is reopened the same AK is loaded from it.
func TestAKPersists(t *testing.T) {
	spec := startSwtpm(t, true)
	path := filepath.Join(t.TempDir(), "ak.blob")

	d := open(t, spec, "")
	ak, created, err := d.LoadOrCreateAK(path)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first LoadOrCreateAK: created = false")
	}
	id1, err := d.Identity(ak)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("AK blob mode %v, want 0600", fi.Mode().Perm())
	}
	if err := ak.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = open(t, spec, "")
	ak2, created, err := d.LoadOrCreateAK(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ak2.Close()
	if created {
		t.Error("second LoadOrCreateAK: created = true")
	}
	if !ak2.Public().(*rsa.PublicKey).Equal(ak.Public()) {
		t.Error("reloaded AK has another public key")
	}
	id2, err := d.Identity(ak2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id1.Ak.Public, id2.Ak.Public) || !bytes.Equal(id1.Ak.CreateAttestation, id2.Ak.CreateAttestation) {
		t.Error("reloaded AK has other attestation parameters")
	}
	if !bytes.Equal(id1.EkPub, id2.EkPub) {
		t.Error("EK changed after reopening")
	}

	// A blob that does not load is an error and stays as it is.
	bad := filepath.Join(t.TempDir(), "bad.blob")
	if err := os.WriteFile(bad, []byte("not an AK"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.LoadOrCreateAK(bad); err == nil {
		t.Error("LoadOrCreateAK on a corrupt blob succeeded")
	}
	if b, _ := os.ReadFile(bad); string(b) != "not an AK" {
		t.Errorf("corrupt blob replaced with %q", b)
	}
}

// TestIdentityAndActivate: swtpm_setup made an EK certificate; Identity
// returns it with the EK public key it certifies, and Activate answers a
// challenge made for this EK and AK, and only that.
func TestIdentityAndActivate(t *testing.T) {
	spec := startSwtpm(t, true)
	d := open(t, spec, "")
	dir := t.TempDir()
	ak, _, err := d.LoadOrCreateAK(filepath.Join(dir, "ak"))
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	other, _, err := d.LoadOrCreateAK(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	id, err := d.Identity(ak)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.EkCert) == 0 {
		t.Fatal("no EK certificate (swtpm_setup --create-ek-cert makes one)")
	}
	cert, err := attest.ParseEKCertificate(id.EkCert)
	if err != nil {
		t.Fatalf("EK certificate: %v", err)
	}
	certPub, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(certPub, id.EkPub) {
		t.Error("EK public key is not the certificate's")
	}
	if pub, certDER, err := d.EK(); err != nil || !bytes.Equal(pub, id.EkPub) || !bytes.Equal(certDER, id.EkCert) {
		t.Errorf("EK() = %d-byte key, %d-byte certificate, %v; want Identity's", len(pub), len(certDER), err)
	}
	ekPub, err := x509.ParsePKIXPublicKey(id.EkPub)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ekPub.(*rsa.PublicKey); !ok {
		t.Errorf("EK is %T, want the RSA EK", ekPub)
	}
	otherID, err := d.Identity(other)
	if err != nil {
		t.Fatal(err)
	}
	strangerEK, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		ek   crypto.PublicKey
		ak   *evidentv1.AKParameters
		ok   bool
	}{
		{"another EK", &strangerEK.PublicKey, id.Ak, false},
		{"another AK", ekPub, otherID.Ak, false},
		{"own EK and AK", ekPub, id.Ak, true}, // after the failures: the TPM still works
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			secret, ch := challenge(t, tc.ek, tc.ak)
			got, err := d.Activate(ak, ch)
			if !tc.ok {
				if err == nil {
					t.Fatalf("Activate succeeded (secret %x)", got)
				}
				t.Logf("Activate: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, secret) {
				t.Errorf("secret %x, want %x", got, secret)
			}
		})
	}
}

// challenge makes the server's activation challenge for ek and ak.
func challenge(tb testing.TB, ek crypto.PublicKey, ak *evidentv1.AKParameters) ([]byte, *evidentv1.ActivationChallenge) {
	tb.Helper()
	ap := attest.ActivationParameters{
		EK: ek,
		AK: attest.AttestationParameters{
			Public:            ak.Public,
			CreateData:        ak.CreateData,
			CreateAttestation: ak.CreateAttestation,
			CreateSignature:   ak.CreateSignature,
		},
	}
	secret, ec, err := ap.Generate()
	if err != nil {
		tb.Fatalf("generate challenge: %v", err)
	}
	return secret, &evidentv1.ActivationChallenge{ChallengeId: "c1", Credential: ec.Credential, Secret: ec.Secret}
}

// TestAttest quotes swtpm after extending a recorded firmware log into its
// PCRs: every bank's quote verifies over the returned PCRs with the
// qualifying data of the nonce and report, the returned log replays to
// them, and an unreadable log is reported, not fatal.
func TestAttest(t *testing.T) {
	tests := []struct {
		name       string
		log        string // recorded log extended and written to a file; "" = none
		missingLog bool   // point the event log path at a missing file
	}{
		{name: "secure boot log", log: tpmtest.SecureBootLog},
		{name: "missing event log", missingLog: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := startSwtpm(t, true)
			logPath := filepath.Join(t.TempDir(), "binary_bios_measurements")
			var logBytes []byte
			raw, err := tpm.Raw(spec)
			if err != nil {
				t.Fatal(err)
			}
			banks := tpmtest.Banks(t, raw)
			if tc.log != "" {
				logBytes = tpmtest.RecordedEventLog(t, tc.log)
				tpmtest.ExtendEventLog(t, raw, logBytes)
				if err := os.WriteFile(logPath, logBytes, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			raw.Close() // swtpm serves one client at a time

			d := open(t, spec, logPath)
			ak, _, err := d.LoadOrCreateAK(filepath.Join(t.TempDir(), "ak"))
			if err != nil {
				t.Fatal(err)
			}
			defer ak.Close()
			nonce, report := randBytes(t, 32), []byte("a serialized report")
			att, err := d.Attest(ak, nonce, report)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(att.Nonce, nonce) || !bytes.Equal(att.Report, report) {
				t.Error("nonce or report not set from the arguments")
			}
			akPub := akPublic(t, d, ak)
			checkQuotes(t, akPub, att, banks, quotedata.Compute(nonce, report))
			if err := akPub.VerifyAll(quotes(att), pcrs(t, att, 0), quotedata.Compute(nonce, append(report, 'x'))); err == nil {
				t.Error("quotes verify with the qualifying data of another report")
			}

			if tc.missingLog {
				if att.EventLogError == "" || len(att.EventLog) != 0 {
					t.Errorf("missing log: EventLog %d bytes, EventLogError %q; want none and a reason", len(att.EventLog), att.EventLogError)
				}
				return
			}
			if att.EventLogError != "" {
				t.Fatalf("EventLogError: %s", att.EventLogError)
			}
			if !bytes.Equal(att.EventLog, logBytes) {
				t.Fatal("EventLog is not the file's content")
			}
			el, err := attest.ParseEventLog(att.EventLog)
			if err != nil {
				t.Fatal(err)
			}
			events, err := el.Verify(pcrs(t, att, tpm2.TPMAlgSHA256))
			if err != nil {
				t.Fatalf("event log does not replay to the quoted PCRs: %v", err)
			}
			sb, err := attest.ParseSecurebootState(events)
			if err != nil {
				t.Fatal(err)
			}
			if !sb.Enabled {
				t.Error("Secure Boot disabled, want enabled (recorded log)")
			}
		})
	}
}

// TestAttestRetriesWhenPCRsChange extends PCR 3 just before quotes:
// Attest must notice the quoted digest differs from the values it read and
// try again, and give up with ErrPCRsChanged when it keeps happening.
func TestAttestRetriesWhenPCRsChange(t *testing.T) {
	spec := startSwtpm(t, true)
	d := open(t, spec, "")
	ak, _, err := d.LoadOrCreateAK(filepath.Join(t.TempDir(), "ak"))
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	var changes, nQuotes int
	tpm.Intercept(d, func(inner transport.TPM, cmd []byte) ([]byte, error) {
		if len(cmd) >= 10 && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:])) == tpm2.TPMCCQuote {
			nQuotes++
			if changes > 0 {
				changes--
				if _, err := (tpm2.PCRExtend{
					PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(3), Auth: tpm2.PasswordAuth(nil)},
					Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: sha256Sum("x")}}},
				}).Execute(inner); err != nil {
					return nil, err
				}
			}
		}
		return inner.Send(cmd)
	})
	nonce := randBytes(t, 16)

	changes, nQuotes = 2, 0
	att, err := d.Attest(ak, nonce, nil)
	if err != nil {
		t.Fatalf("attest with PCRs changing twice: %v", err)
	}
	if nQuotes != 3 {
		t.Errorf("%d quotes, want 3 (one bank)", nQuotes)
	}
	if err := akPublic(t, d, ak).VerifyAll(quotes(att), pcrs(t, att, 0), quotedata.Compute(nonce, nil)); err != nil {
		t.Errorf("quote after retries: %v", err)
	}

	changes, nQuotes = 3, 0
	if _, err := d.Attest(ak, nonce, nil); !errors.Is(err, tpm.ErrPCRsChanged) {
		t.Errorf("attest with PCRs changing every time: %v, want ErrPCRsChanged", err)
	}
	if nQuotes != 3 {
		t.Errorf("%d quotes, want 3", nQuotes)
	}
}

// BenchmarkQuote measures the agent's side of an attestation on swtpm:
// Attest reads PCRs 0-7 of each bank, quotes them, checks the quote and
// reads the event log.
func BenchmarkQuote(b *testing.B) {
	spec := startSwtpm(b, false)
	d := open(b, spec, filepath.Join(b.TempDir(), "no-log"))
	ak, _, err := d.LoadOrCreateAK(filepath.Join(b.TempDir(), "ak"))
	if err != nil {
		b.Fatal(err)
	}
	defer ak.Close()
	nonce, report := randBytes(b, 32), randBytes(b, 1024)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := d.Attest(ak, nonce, report); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/attest")
}

// checkQuotes checks att has one quote per bank, each over PCRs 0-7 and
// verifying with qd.
func checkQuotes(tb testing.TB, akPub *attest.AKPublic, att *evidentv1.Attestation, banks []tpm2.TPMAlgID, qd []byte) {
	tb.Helper()
	if len(att.Quotes) != len(banks) {
		tb.Fatalf("%d quotes, want one per bank %v", len(att.Quotes), banks)
	}
	for i, q := range att.Quotes {
		if tpm2.TPMAlgID(q.HashAlg) != banks[i] {
			tb.Errorf("quote %d of bank 0x%x, want 0x%x", i, q.HashAlg, banks[i])
		}
		ps := pcrs(tb, att, tpm2.TPMAlgID(q.HashAlg))
		if len(ps) != 8 {
			tb.Errorf("bank 0x%x: %d PCRs, want 8", q.HashAlg, len(ps))
		}
		for j, p := range ps {
			if p.Index != j {
				tb.Errorf("bank 0x%x: PCR %d at position %d", q.HashAlg, p.Index, j)
			}
		}
		if err := akPub.Verify(attest.Quote{Quote: q.Attest, Signature: q.Signature}, ps, qd); err != nil {
			tb.Errorf("bank 0x%x: quote does not verify: %v", q.HashAlg, err)
		}
	}
}

func quotes(att *evidentv1.Attestation) []attest.Quote {
	var out []attest.Quote
	for _, q := range att.Quotes {
		out = append(out, attest.Quote{Quote: q.Attest, Signature: q.Signature})
	}
	return out
}

// pcrs converts att's PCR values of bank alg (0: all banks).
func pcrs(tb testing.TB, att *evidentv1.Attestation, alg tpm2.TPMAlgID) []attest.PCR {
	tb.Helper()
	var out []attest.PCR
	for _, p := range att.Pcrs {
		if alg != 0 && tpm2.TPMAlgID(p.HashAlg) != alg {
			continue
		}
		h, err := tpm2.TPMAlgID(p.HashAlg).Hash()
		if err != nil {
			tb.Fatalf("PCR bank 0x%x: %v", p.HashAlg, err)
		}
		out = append(out, attest.PCR{Index: int(p.Index), Digest: p.Digest, DigestAlg: h})
	}
	return out
}

func akPublic(tb testing.TB, d *tpm.Device, ak *tpm.AK) *attest.AKPublic {
	tb.Helper()
	id, err := d.Identity(ak)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := attest.ParseAKPublic(id.Ak.Public)
	if err != nil {
		tb.Fatal(err)
	}
	return pub
}

// startSwtpm starts a fresh swtpm and returns its spec. A missing swtpm
// fails the test under CI=true (when failInCI) and skips it otherwise.
func startSwtpm(tb testing.TB, failInCI bool) string {
	tb.Helper()
	if failInCI {
		swtpmtest.Require(tb, "swtpm", "swtpm_setup")
	} else if msg := swtpmtest.Missing("swtpm", "swtpm_setup"); msg != "" {
		tb.Skip(msg)
	}
	_, port := swtpmtest.Start(tb)
	return "swtpm:127.0.0.1:" + strconv.Itoa(port)
}

// open opens spec and closes it when the test ends.
func open(tb testing.TB, spec, eventLog string) *tpm.Device {
	tb.Helper()
	d, err := tpm.Open(spec, eventLog)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

func randBytes(tb testing.TB, n int) []byte {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// TestUnixSocket opens an swtpm serving a Unix socket, by "unix:PATH" and
// by the bare path, and attests through it.
func TestUnixSocket(t *testing.T) {
	swtpmtest.Require(t, "swtpm", "swtpm_setup")
	dir, err := os.MkdirTemp("", "swtpm") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := swtpmtest.Run(t, dir, nil, "swtpm_setup", "--tpm2", "--tpmstate", state, "--createek", "--pcr-banks", "sha256"); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
		"--flags", "not-need-init,startup-clear",
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The socket file exists as soon as swtpm binds it, before it listens:
	// wait until a connection is accepted.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("swtpm did not accept connections on its socket")
		}
	}
	for _, spec := range []string{"unix:" + sock, sock} {
		t.Run(spec, func(t *testing.T) {
			d, err := tpm.Open(spec, filepath.Join(dir, "no-log"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close() // the socket serves one client at a time
			ak, _, err := d.LoadOrCreateAK(filepath.Join(dir, "ak"))
			if err != nil {
				t.Fatal(err)
			}
			defer ak.Close()
			nonce := randBytes(t, 32)
			att, err := d.Attest(ak, nonce, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := akPublic(t, d, ak).VerifyAll(quotes(att), pcrs(t, att, 0), quotedata.Compute(nonce, nil)); err != nil {
				t.Error(err)
			}
		})
	}
}
