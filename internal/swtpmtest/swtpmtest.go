// Package swtpmtest runs a real software TPM (swtpm) for tests: a fresh
// state directory per test, provisioned with an EK, served on two
// consecutive loopback ports (tpm2-tools' swtpm TCTI always uses the data
// port + 1 for control), stopped when the test ends.
package swtpmtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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
