// Package swtpmtest runs a real software TPM (swtpm) for tests: a fresh
// state directory per test, provisioned with an EK, served on two
// consecutive loopback ports (tpm2-tools' swtpm TCTI always uses the data
// port + 1 for control), stopped when the test ends.
package swtpmtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// Missing returns why the tools cannot be used, or "" when all are in PATH.
func Missing(tools ...string) string {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s not found in PATH (apt-get install swtpm swtpm-tools tpm2-tools)", tool)
		}
	}
	return ""
}

// Require fails the test under CI=true, and skips it otherwise, when one of
// the tools is missing: a real component may never be skipped quietly in CI.
func Require(tb testing.TB, tools ...string) {
	tb.Helper()
	if msg := Missing(tools...); msg != "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
}

// Run runs one command in dir (env appended to the environment) with a
// bounded time and returns its combined output.
func Run(tb testing.TB, dir string, env []string, bin string, args ...string) (string, error) {
	tb.Helper()
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

// Start provisions a fresh swtpm (EK, plus EK and platform certificates
// when swtpm_setup can make them) in a temporary directory, starts it and
// returns that directory and the data port. Call Require first.
func Start(tb testing.TB) (dir string, port int) {
	tb.Helper()
	dir = tb.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		tb.Fatal(err)
	}
	// The certificate options need swtpm-localca; the quote does not depend
	// on them, so fall back to a plain EK.
	full := []string{"--tpm2", "--tpmstate", state, "--createek", "--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--pcr-banks", "sha256"}
	if out, err := Run(tb, dir, nil, "swtpm_setup", full...); err != nil {
		tb.Logf("swtpm_setup with certificates failed (%v), retrying without: %s", err, out)
		os.RemoveAll(state)
		if err := os.Mkdir(state, 0o700); err != nil {
			tb.Fatal(err)
		}
		if out, err := Run(tb, dir, nil, "swtpm_setup", "--tpm2", "--tpmstate", state, "--createek", "--pcr-banks", "sha256"); err != nil {
			tb.Fatalf("swtpm_setup: %v\n%s", err, out)
		}
	}
	return dir, serve(tb, dir, state)
}

// serve starts swtpm on two free consecutive loopback ports, waits until its
// data port accepts connections and stops it when the test ends.
func serve(tb testing.TB, dir, state string) int {
	tb.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		port := freePortPair(tb)
		cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
			"--flags", "not-need-init,startup-clear",
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1))
		logPath := filepath.Join(dir, fmt.Sprintf("swtpm-%d.log", attempt))
		logf, err := os.Create(logPath)
		if err != nil {
			tb.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			tb.Fatalf("start swtpm: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				tb.Errorf("swtpm (pid %d) did not exit", cmd.Process.Pid)
			}
		}
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
			select {
			case <-exited:
				deadline = time.Time{} // exited early, e.g. port taken: retry
				continue
			default:
			}
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
				c.Close()
				tb.Cleanup(stop)
				return port
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
		log, _ := os.ReadFile(logPath)
		tb.Logf("swtpm attempt %d on port %d did not come up:\n%s", attempt, port, log)
	}
	tb.Fatal("swtpm did not accept connections")
	return 0
}

// freePortPair returns a port P such that P and P+1 were both free.
func freePortPair(tb testing.TB) int {
	tb.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	tb.Fatal("no two consecutive free loopback ports")
	return 0
}

// CopyLocalCA copies the certificates of swtpm-localca, the CA that
// `swtpm_setup --create-ek-cert` signs EK certificates with (its state
// directory comes from /etc/swtpm-localca.conf, as swtpm_setup finds it),
// into dst: the EK roots a server needs to trust an swtpm. Call after
// Start (which creates the CA on first use).
func CopyLocalCA(tb testing.TB, dst string) {
	tb.Helper()
	conf, err := os.ReadFile("/etc/swtpm-localca.conf")
	if err != nil {
		tb.Fatalf("swtpm-localca configuration: %v", err)
	}
	var state string
	for _, line := range strings.Split(string(conf), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "statedir" {
			state = strings.TrimSpace(v)
		}
	}
	if state == "" {
		tb.Fatal("/etc/swtpm-localca.conf names no statedir")
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"issuercert.pem", "swtpm-localca-rootca-cert.pem"} {
		b, err := os.ReadFile(filepath.Join(state, name))
		if err != nil {
			tb.Fatalf("swtpm-localca certificate: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// conn is a raw TPM command connection to an swtpm data port.
type conn struct{ c net.Conn }

// Dial opens a raw command connection to the swtpm on port, for a test to
// prepare the TPM (extend PCRs) before the code under test opens it. The
// swtpm serves one connection at a time: close it first.
func Dial(tb testing.TB, port int) transport.TPMCloser {
	tb.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		tb.Fatalf("dial swtpm: %v", err)
	}
	return &conn{c}
}

// Send implements transport.TPM: the response is read by the length in its
// header, never with a single Read.
func (s *conn) Send(cmd []byte) ([]byte, error) {
	if err := s.c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return nil, err
	}
	if _, err := s.c.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.c, hdr); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if n < 10 || n > 1<<16 {
		return nil, fmt.Errorf("swtpm response of %d bytes", n)
	}
	rsp := make([]byte, n)
	copy(rsp, hdr)
	_, err := io.ReadFull(s.c, rsp[10:])
	return rsp, err
}

// Close implements transport.TPMCloser.
func (s *conn) Close() error { return s.c.Close() }
