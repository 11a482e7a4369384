package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/evident-dev/evident/internal/swtpmtest"
)

// TestAttestQuoteInterop quotes PCRs 0-7 on a fresh swtpm with tpm2-tools and
// checks that `evident-server attest verify` and `tpm2_checkquote` agree: both
// accept the real quote, both reject it with a flipped byte in the message, the
// signature or the PCR file, or with another nonce.
func TestAttestQuoteInterop(t *testing.T) {
	swtpmtest.Require(t, "swtpm", "swtpm_setup", "tpm2_createek", "tpm2_createak", "tpm2_pcrextend", "tpm2_quote", "tpm2_checkquote", "tpm2_flushcontext")
	dir, port := swtpmtest.Start(t)
	env := []string{"TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=" + strconv.Itoa(port)}
	tpm := func(args ...string) {
		t.Helper()
		if out, err := swtpmtest.Run(t, dir, env, args[0], args[1:]...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		// No resource manager: flush transient objects after every command.
		if out, err := swtpmtest.Run(t, dir, env, "tpm2_flushcontext", "-t"); err != nil {
			t.Fatalf("tpm2_flushcontext -t: %v\n%s", err, out)
		}
	}
	tpm("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
	tpm("tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", "rsa", "-g", "sha256", "-s", "rsassa", "-u", "ak.pem", "-f", "pem", "-n", "ak.name")
	for i := 0; i < 8; i++ {
		tpm("tpm2_pcrextend", fmt.Sprintf("%d:sha256=%s", i, randHex(t, 32)))
	}
	nonce := randHex(t, 16)
	tpm("tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0,1,2,3,4,5,6,7", "-q", nonce, "-m", "quote.msg", "-s", "quote.sig", "-o", "quote.pcrs", "-g", "sha256")

	type files struct{ msg, sig, pcrs, nonce string }
	verify := func(f files) (string, error) {
		return swtpmtest.Run(t, dir, nil, serverBin, "attest", "verify", "--ak-pub", "ak.pem", "--msg", f.msg, "--sig", f.sig, "--pcrs", f.pcrs, "--nonce", f.nonce, "--pcr-list", "sha256:0,1,2,3,4,5,6,7")
	}
	check := func(f files) (string, error) {
		return swtpmtest.Run(t, dir, nil, "tpm2_checkquote", "-u", "ak.pem", "-m", f.msg, "-s", f.sig, "-f", f.pcrs, "-g", "sha256", "-q", f.nonce)
	}
	good := files{"quote.msg", "quote.sig", "quote.pcrs", nonce}
	if out, err := verify(good); err != nil || !strings.Contains(out, "quote verified:") {
		t.Fatalf("evident-server attest verify rejected a real quote: %v\n%s", err, out)
	}
	if out, err := check(good); err != nil {
		t.Fatalf("tpm2_checkquote rejected the real quote: %v\n%s", err, out)
	}

	flipped := func(name string, off int) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if off < 0 {
			off += len(b)
		}
		if off < 0 || off >= len(b) {
			t.Fatalf("%s is %d bytes, cannot flip byte %d", name, len(b), off)
		}
		b[off] ^= 0xff
		bad := fmt.Sprintf("%s.flipped%d", name, off)
		if err := os.WriteFile(filepath.Join(dir, bad), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return bad
	}
	otherNonce := randHex(t, 16)
	for _, tc := range []struct {
		name   string
		f      files
		reason string
	}{
		// Byte 44 of the TPMS_ATTEST is inside extraData (after magic, type and
		// the 34-byte qualified signer name).
		{"msg extraData byte flipped", files{flipped("quote.msg", 44), "quote.sig", "quote.pcrs", nonce}, "bad signature"},
		{"msg last byte flipped", files{flipped("quote.msg", -1), "quote.sig", "quote.pcrs", nonce}, "bad signature"},
		{"sig byte flipped", files{"quote.msg", flipped("quote.sig", 100), "quote.pcrs", nonce}, "bad signature"},
		// Byte 142 is the first byte of PCR 0's value (132-byte selection, two counts, size).
		{"pcr value byte flipped", files{"quote.msg", "quote.sig", flipped("quote.pcrs", 142), nonce}, "PCR digest mismatch"},
		{"wrong nonce", files{"quote.msg", "quote.sig", "quote.pcrs", otherNonce}, "nonce mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := verify(tc.f)
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Errorf("evident-server attest verify accepted it (err %v):\n%s", err, out)
			} else if !strings.Contains(out, tc.reason) {
				t.Errorf("evident-server attest verify: want reason %q, got:\n%s", tc.reason, out)
			}
			cout, cerr := check(tc.f)
			if !errors.As(cerr, &ee) {
				t.Errorf("tpm2_checkquote accepted it (err %v) while evident-server rejected it:\n%s", cerr, cout)
			}
		})
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
