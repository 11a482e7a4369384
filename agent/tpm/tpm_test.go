package tpm_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/evident-dev/evident/internal/swtpmtest"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/evident-dev/evident/agent/tpm"
	"github.com/evident-dev/evident/server/attest"
)

var pcrs0to7 = []int{0, 1, 2, 3, 4, 5, 6, 7}

func TestQuoteVerifies(t *testing.T) {
	dev := openSwtpm(t, true)
	ak, err := tpm.CreateAK(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()

	// Extend PCR 7 so that not every quoted PCR is zero.
	if _, err := (tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(7), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256, Digest: sha256Sum("evident-test-pcr7"),
		}}},
	}).Execute(dev); err != nil {
		t.Fatalf("PCR_Extend: %v", err)
	}

	nonce := randBytes(t, 32)
	q, err := tpm.QuotePCRs(dev, ak, nonce, pcrs0to7)
	if err != nil {
		t.Fatal(err)
	}
	res, err := attest.VerifyQuote(ak.Public, q.Msg, q.Sig, q.PCRs, nonce, nil)
	if err != nil {
		t.Fatalf("VerifyQuote rejected a fresh quote: %v", err)
	}
	t.Logf("verified: %s", res)
	if v := q.PCRs[tpm2.TPMAlgSHA256][7]; len(v) != 32 || string(v) == string(make([]byte, 32)) {
		t.Errorf("PCR 7 = %x, want an extended value", v)
	}

	if _, err := attest.VerifyQuote(ak.Public, q.Msg, q.Sig, q.PCRs, randBytes(t, 32), nil); !errors.Is(err, attest.ErrNonceMismatch) {
		t.Errorf("VerifyQuote with another nonce: %v, want ErrNonceMismatch", err)
	}

	// The same options give the same key again: the agent can recreate its AK.
	// Another Unique gives another key, whose quotes the first key rejects.
	ak2, err := tpm.CreateAKWith(dev, tpm.AKOptions{Unique: []byte("second AK")})
	if err != nil {
		t.Fatal(err)
	}
	defer ak2.Close()
	if ak2.Public.(*rsa.PublicKey).Equal(ak.Public) {
		t.Fatal("second AK has the first AK's key")
	}
	q2, err := ak2.Quote(nonce, pcrs0to7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.VerifyQuote(ak2.Public, q2.Msg, q2.Sig, q2.PCRs, nonce, nil); err != nil {
		t.Errorf("second AK's quote with its own key: %v", err)
	}
	if _, err := attest.VerifyQuote(ak.Public, q2.Msg, q2.Sig, q2.PCRs, nonce, nil); !errors.Is(err, attest.ErrBadSignature) {
		t.Errorf("second AK's quote with the first AK's key: %v, want ErrBadSignature", err)
	}

	again, err := tpm.CreateAK(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !again.Public.(*rsa.PublicKey).Equal(ak.Public) {
		t.Error("CreateAK twice gave two keys, want the same primary key")
	}

	// Input checks.
	if _, err := ak.Quote(nil, pcrs0to7); err == nil {
		t.Error("empty nonce accepted")
	}
	if _, err := ak.Quote(nonce, []int{24}); err == nil {
		t.Error("PCR 24 accepted")
	}
}

// TestQuoteRetriesWhenPCRsChange extends PCR 3 just before the first
// quotes: Quote must notice the digest differs from the values it read and
// try again, and give up with ErrPCRsChanged when it keeps happening.
func TestQuoteRetriesWhenPCRsChange(t *testing.T) {
	dev := openSwtpm(t, true)
	ak, err := tpm.CreateAK(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	var changes, quotes int
	tpm.Intercept(dev, func(inner transport.TPM, cmd []byte) ([]byte, error) {
		if len(cmd) >= 10 && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:])) == tpm2.TPMCCQuote {
			quotes++
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

	changes, quotes = 2, 0
	q, err := ak.Quote(nonce, pcrs0to7)
	if err != nil {
		t.Fatalf("quote with PCRs changing twice: %v", err)
	}
	if quotes != 3 {
		t.Errorf("%d quotes, want 3", quotes)
	}
	if _, err := attest.VerifyQuote(ak.Public, q.Msg, q.Sig, q.PCRs, nonce, nil); err != nil {
		t.Errorf("VerifyQuote after retries: %v", err)
	}

	changes, quotes = 3, 0
	if _, err := ak.Quote(nonce, pcrs0to7); !errors.Is(err, tpm.ErrPCRsChanged) {
		t.Errorf("quote with PCRs changing every time: %v, want ErrPCRsChanged", err)
	}
	if quotes != 3 {
		t.Errorf("%d quotes, want 3", quotes)
	}
}

func TestReadPCRsChunks(t *testing.T) {
	dev := openSwtpm(t, true)
	all := make([]int, 24)
	for i := range all {
		all[i] = i
	}
	vals, err := tpm.ReadPCRs(dev, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 24 {
		t.Fatalf("read %d PCRs, want 24", len(vals))
	}
}

func TestOpenErrors(t *testing.T) {
	for _, spec := range []string{"bogus", "", "swtpm:nohostport", "relative/dev/tpm0"} {
		if _, err := tpm.Open(spec); !errors.Is(err, tpm.ErrBadSpec) {
			t.Errorf("Open(%q) = %v, want ErrBadSpec", spec, err)
		}
	}
	start := time.Now()
	if _, err := tpm.Open("swtpm:127.0.0.1:1"); err == nil {
		t.Error("Open on a closed port succeeded")
	} else {
		t.Logf("closed port: %v", err)
	}
	if d := time.Since(start); d > tpm.DialTimeout+time.Second {
		t.Errorf("Open on a closed port took %v", d)
	}
	if _, err := tpm.Open("/nonexistent/tpmrm0"); err == nil {
		t.Error("Open of a missing device succeeded")
	}
}

func BenchmarkQuote(b *testing.B) {
	dev := openSwtpm(b, false)
	ak, err := tpm.CreateAK(dev)
	if err != nil {
		b.Fatal(err)
	}
	defer ak.Close()
	nonce := randBytes(b, 32)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := ak.Quote(nonce, pcrs0to7); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/quote")
}

// openSwtpm starts a fresh swtpm and opens it. A missing swtpm fails the test
// under CI=true (when failInCI) and skips it otherwise.
func openSwtpm(tb testing.TB, failInCI bool) *tpm.TPM {
	tb.Helper()
	if failInCI {
		swtpmtest.Require(tb, "swtpm", "swtpm_setup")
	} else if msg := swtpmtest.Missing("swtpm", "swtpm_setup"); msg != "" {
		tb.Skip(msg)
	}
	_, port := swtpmtest.Start(tb)
	dev, err := tpm.Open("swtpm:127.0.0.1:" + strconv.Itoa(port))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dev.Close() })
	return dev
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
