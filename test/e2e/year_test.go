package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/internal/testhook"
)

const day = 24 * time.Hour

// TestAYearOfRenewals runs a server and an agent (the real binaries) through
// 400 days of a moving clock, 5 days at a time with reports flowing: the
// device certificate (90 days) renews every 60 days, the server certificate
// (one year) renews itself without a restart, a CA rollover staged at day
// 150 reaches the agent over its stream, takes over at day 160 and retires
// the old CA at day 251, and every observation the agent persisted is
// stored exactly once. The second run kills the agent at
// every step of a renewal, one after the other, and restarts it: it never
// loses its identity or an observation.
func TestAYearOfRenewals(t *testing.T) {
	crashes := []string{"renew:key-written", "renew:certificate-written", "renew:confirmed", "renew:key-installed"}
	for _, tc := range []struct {
		name    string
		crashes []string
	}{
		{"clean", nil},
		{"killed at each renewal step", crashes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			yearOfRenewals(t, tc.crashes)
		})
	}
}

func yearOfRenewals(t *testing.T, crashes []string) {
	root := t.TempDir()
	clk := newTestClock(t)
	srvDir, agentDir := filepath.Join(root, "server"), filepath.Join(root, "agent")
	srv := startServerEnv(t, clk.env(), srvDir, "127.0.0.1:0")
	firstServerCert := readCert(t, filepath.Join(srvDir, "pki", "server.crt"))
	device := enroll(t, srv, agentDir, srv.token(t))
	stored := func() int { return counts(t, srvDir, device).Total }
	args := []string{"run", "--data-dir", agentDir, "--interval", "100ms", "--collectors", "osinfo", "--log-level", "debug"}

	startAgent := func(n int) (*proc, string) {
		env := clk.env()
		point := ""
		if len(crashes) > 0 {
			point = crashes[0]
			env = append(env, testhook.CrashEnv+"="+point)
		}
		p := startEnv(t, env, fmt.Sprintf("agent-%d.log", n), agentBin, args...)
		return p, point
	}
	ag, point := startAgent(0)
	starts := 1
	firstCA := readCert(t, filepath.Join(srvDir, "pki", "ca.crt"))
	caCount := func() int {
		b, _ := os.ReadFile(filepath.Join(agentDir, "identity", "ca.pem"))
		return strings.Count(string(b), "BEGIN CERTIFICATE")
	}
	for d := time.Duration(0); d <= 400*day; d += 5 * day {
		clk.set(t, d)
		if d == 150*day {
			// A CA rollover mid-way: the new CA takes over at day 160.
			if out, e, err := run(t, clk.env(), serverBin, "ca", "rotate", "--data-dir", srvDir, "--overlap", "240h"); err != nil {
				t.Fatalf("ca rotate: %v\n%s%s", err, out, e)
			}
			waitFor(t, "the agent to trust both CAs", time.Minute, func() bool { return caCount() == 2 })
		}
		before := stored()
		deadline := time.Now().Add(2 * time.Minute)
		for stored() <= before {
			select {
			case <-ag.wait():
				err := ag.waitErr
				if point == "" {
					t.Fatalf("day %d: the agent exited: %v", d/day, err)
				}
				b, _ := os.ReadFile(ag.log)
				if !strings.Contains(string(b), "testhook: crashing at "+point) {
					t.Fatalf("day %d: the agent exited (%v) but not at %s:\n%s", d/day, err, point, tail(b, 20))
				}
				t.Logf("day %d: agent killed at %s", d/day, point)
				crashes = crashes[1:]
				ag, point = startAgent(starts)
				starts++
			default:
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(ag.log)
				t.Fatalf("day %d: nothing delivered for 2 minutes (%d stored)\n%s", d/day, stored(), tail(b, 30))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if len(crashes) > 0 {
		t.Fatalf("the year ended before the agent reached %v", crashes)
	}
	ag.stop(t)
	// Deliver the rest, on the last day's clock.
	if out, errOut, err := run(t, clk.env(), agentBin, "run", "--once", "--data-dir", agentDir, "--collectors", "osinfo", "--once-timeout", "1m"); err != nil {
		t.Fatalf("run --once: %v\n%s%s", err, out, errOut)
	}
	srv.p.stop(t)

	persisted := drained(t, agentDir)
	c := counts(t, srvDir, device)
	if c.Total != int(persisted) || c.MinSeq != 1 || c.MaxSeq != persisted {
		t.Fatalf("server stored %d observations (seq %d..%d); agent persisted seqs 1..%d", c.Total, c.MinSeq, c.MaxSeq, persisted)
	}
	b, _ := os.ReadFile(srv.p.log)
	renewals := strings.Count(string(b), "device certificate renewed")
	if renewals < 5 {
		t.Errorf("%d device certificate renewals in 400 days, want at least 5 (every 60 days)", renewals)
	}
	dev := deviceRecord(t, srvDir, device)
	start := firstServerCert.NotBefore.Add(time.Hour)
	if !dev.CertNotAfter.After(start.Add(400 * day)) {
		t.Errorf("the device's certificate expires %s: not renewed through the year", dev.CertNotAfter)
	}
	newCA := readCert(t, filepath.Join(srvDir, "pki", "ca.crt"))
	deviceCert := readCert(t, filepath.Join(agentDir, "identity", "device.crt"))
	if newCA.Equal(firstCA) || deviceCert.CheckSignatureFrom(newCA) != nil || caCount() != 1 {
		t.Errorf("after the CA rollover: CA replaced %v, device certificate from the new CA %v, agent trusts %d CAs (want 1)",
			!newCA.Equal(firstCA), deviceCert.CheckSignatureFrom(newCA) == nil, caCount())
	}
	last := readCert(t, filepath.Join(srvDir, "pki", "server.crt"))
	if last.CheckSignatureFrom(newCA) != nil {
		t.Errorf("the server certificate was not issued by the new CA")
	}
	if last.SerialNumber.Cmp(firstServerCert.SerialNumber) == 0 || !last.NotAfter.After(start.Add(400*day)) {
		t.Errorf("server certificate after 400 days: %s to %s (the first ran to %s); want a renewed one", last.NotBefore, last.NotAfter, firstServerCert.NotAfter)
	}
	t.Logf("400 days: %d observations stored exactly once, %d device certificate renewals, %d agent starts, a CA rollover (day 150 to 251), server certificate renewed (now valid to %s)",
		c.Total, renewals, starts, last.NotAfter.Format(time.DateOnly))
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: not PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
