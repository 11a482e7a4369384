package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAttestQuoteInterop quotes PCRs 0-7 on a fresh swtpm with tpm2-tools and
// checks that `evident-server attest verify` and `tpm2_checkquote` agree: both
// accept the real quote, both reject it with a flipped byte in the message, the
// signature or the PCR file, or with another nonce.
func TestAttestQuoteInterop(t *testing.T) {
	tools := []string{"swtpm", "swtpm_setup", "tpm2_createek", "tpm2_createak", "tpm2_pcrextend", "tpm2_quote", "tpm2_checkquote", "tpm2_flushcontext"}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("%s not found in PATH (apt-get install swtpm swtpm-tools tpm2-tools)", tool)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	// swtpm_setup's certificate options need swtpm-localca to work; fall back to
	// a plain EK when they do not, the quote does not depend on them.
	full := []string{"--tpm2", "--tpmstate", state, "--createek", "--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--pcr-banks", "sha256"}
	if out, err := tpmCmd(t, dir, nil, "swtpm_setup", full...); err != nil {
		t.Logf("swtpm_setup with certificates failed (%v), retrying without: %s", err, out)
		os.RemoveAll(state)
		os.Mkdir(state, 0o700)
		if out, err := tpmCmd(t, dir, nil, "swtpm_setup", "--tpm2", "--tpmstate", state, "--createek", "--pcr-banks", "sha256"); err != nil {
			t.Fatalf("swtpm_setup: %v\n%s", err, out)
		}
	}
	port := startSwtpm(t, dir, state)
	env := []string{"TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=" + strconv.Itoa(port)}
	tpm := func(args ...string) {
		t.Helper()
		if out, err := tpmCmd(t, dir, env, args[0], args[1:]...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		// No resource manager: flush transient objects after every command.
		if out, err := tpmCmd(t, dir, env, "tpm2_flushcontext", "-t"); err != nil {
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
		return tpmCmd(t, dir, nil, serverBin, "attest", "verify", "--ak-pub", "ak.pem", "--msg", f.msg, "--sig", f.sig, "--pcrs", f.pcrs, "--nonce", f.nonce, "--pcr-list", "sha256:0,1,2,3,4,5,6,7")
	}
	check := func(f files) (string, error) {
		return tpmCmd(t, dir, nil, "tpm2_checkquote", "-u", "ak.pem", "-m", f.msg, "-s", f.sig, "-f", f.pcrs, "-g", "sha256", "-q", f.nonce)
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

// tpmCmd runs one command in dir with a bounded time and returns its combined output.
func tpmCmd(t *testing.T, dir string, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out: %w", bin, ctx.Err())
	}
	return out.String(), err
}

// startSwtpm starts swtpm on two free loopback ports, waits until its data port
// accepts connections and stops it when the test ends. It returns the data port.
func startSwtpm(t *testing.T, dir, state string) int {
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		port := freePortPair(t)
		ctrl := port + 1 // the tpm2-tools swtpm TCTI always uses the data port + 1
		cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
			"--flags", "not-need-init,startup-clear",
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", ctrl))
		logPath := filepath.Join(dir, fmt.Sprintf("swtpm-%d.log", attempt))
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start swtpm: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Errorf("swtpm (pid %d) did not exit", cmd.Process.Pid)
			}
		}
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{} // exited early, e.g. port taken: retry
				continue
			default:
			}
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				t.Cleanup(stop)
				return port
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
		log, _ := os.ReadFile(logPath)
		t.Logf("swtpm attempt %d on port %d did not come up:\n%s", attempt, port, log)
	}
	t.Fatal("swtpm did not accept connections")
	return 0
}

// freePortPair returns a port P such that P and P+1 were both free on loopback.
func freePortPair(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("no two consecutive free loopback ports")
	return 0
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
