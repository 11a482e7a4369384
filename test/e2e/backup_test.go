package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/pki"
)

// TestBackupRestore: a backup taken while an agent streams restores to a
// server whose evidence is the original's up to the backup point (seqs 1..N
// with nothing missing), whose period report up to that point equals the
// original's, and whose bundles verify against the original CA's
// fingerprint; the restored server starts. A damaged backup, a restore over
// an existing database and a backup over an existing file are refused.
func TestBackupRestore(t *testing.T) {
	root := t.TempDir()
	srvDir, agentDir, restored := filepath.Join(root, "server"), filepath.Join(root, "agent"), filepath.Join(root, "restored")
	srv := startServer(t, srvDir, "127.0.0.1:0")
	enrolledAt := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	device := enroll(t, srv, agentDir, srv.token(t))
	ag := start(t, "agent.log", agentBin, "run", "--data-dir", agentDir, "--interval", "50ms", "--collectors", "osinfo,secureboot")
	stored := func() int { return counts(t, srvDir, device).Total }
	waitFor(t, "evidence flowing", time.Minute, func() bool { return stored() >= 40 })

	// Everything received before this instant is in the snapshot taken
	// after it.
	point := time.Now().UTC().Truncate(time.Second)
	time.Sleep(1100 * time.Millisecond)
	bak := filepath.Join(root, "evident.backup")
	beforeBackup := stored()
	if out, e, err := run(t, nil, serverBin, "backup", "--data-dir", srvDir, "--out", bak); err != nil {
		t.Fatalf("backup: %v\n%s%s", err, out, e)
	}
	if fi, err := os.Stat(bak); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want 0600 (it holds the CA key)", err, fi.Mode())
	}
	if _, e, err := run(t, nil, serverBin, "backup", "--data-dir", srvDir, "--out", bak); err == nil || !strings.Contains(e, "exists") {
		t.Errorf("backup over an existing file: %v %s", err, e)
	}
	atBackup := stored()
	waitFor(t, "ingest to go on after the backup", time.Minute, func() bool { return stored() > atBackup+20 })
	ag.stop(t)
	srv.p.stop(t)

	// A damaged copy is refused before anything is written.
	b, err := os.ReadFile(bak)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(root, "damaged.backup")
	b2 := append([]byte(nil), b...)
	b2[len(b2)/2] ^= 0xff
	if err := os.WriteFile(damaged, b2, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, e, err := run(t, nil, serverBin, "restore", "--from", damaged, "--data-dir", filepath.Join(root, "never")); err == nil || !strings.Contains(e, "damaged") && !strings.Contains(e, "checksum") {
		t.Errorf("restore of a damaged backup: %v %s", err, e)
	}
	if _, err := os.Stat(filepath.Join(root, "never", "evident.db")); err == nil {
		t.Error("a damaged backup wrote a database")
	}

	if out, e, err := run(t, nil, serverBin, "restore", "--from", bak, "--data-dir", restored); err != nil {
		t.Fatalf("restore: %v\n%s%s", err, out, e)
	}
	if _, e, err := run(t, nil, serverBin, "restore", "--from", bak, "--data-dir", restored); err == nil || !strings.Contains(e, "--force") {
		t.Errorf("restore over an existing database: %v %s", err, e)
	}
	orig, back := counts(t, srvDir, device), counts(t, restored, device)
	if back.MinSeq != 1 || back.Total != int(back.MaxSeq) || back.MaxSeq < uint64(beforeBackup) || back.MaxSeq > uint64(atBackup) {
		t.Fatalf("restored evidence seq %d..%d (%d); original %d..%d, %d to %d during the backup", back.MinSeq, back.MaxSeq, back.Total, orig.MinSeq, orig.MaxSeq, beforeBackup, atBackup)
	}

	// The period report up to the backup point is the original's.
	report := func(dir string) map[string]any {
		out, e, err := run(t, nil, serverBin, "report", "period", "--data-dir", dir, "--format", "json",
			"--from", enrolledAt.Format(time.RFC3339), "--to", point.Format(time.RFC3339))
		if err != nil {
			t.Fatalf("report period: %v\n%s", err, e)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "generated_at")
		stripLatest(m)
		return m
	}
	want, got := report(srvDir), report(restored)
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if string(wb) != string(gb) {
		t.Errorf("period report to the backup point differs:\noriginal %s\nrestored %s", wb, gb)
	}

	// Bundles of the restored server verify against the original CA.
	ca := readCert(t, filepath.Join(srvDir, "pki", "ca.crt"))
	bundle := filepath.Join(root, "bundle.tar")
	if _, e, err := run(t, nil, serverBin, "export", "bundle", "--data-dir", restored, "--out", bundle); err != nil {
		t.Fatalf("export bundle: %v\n%s", err, e)
	}
	if out, e, err := run(t, nil, serverBin, "verify", "--ca-fingerprint", pki.Fingerprint(ca.Raw), bundle); err != nil {
		t.Fatalf("verify: %v\n%s%s", err, out, e)
	}
	// And the restored server runs on it.
	again := startServer(t, restored, "127.0.0.1:0")
	again.p.stop(t)
}

// stripLatest removes, at any depth, what a report says of the latest
// confirmation of an interval still open or of a device's last contact
// (when, how often, with which observation, and the times in a reason such
// as "last report received …"): the original server went on confirming
// after the backup point, so these run past the period's end. Statuses,
// interval bounds, reasons and every figure remain.
func stripLatest(v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range []string{"evaluated_at", "evaluations", "evidence", "evidence_seq", "last_seen_at"} {
			delete(x, k)
		}
		for k, c := range x {
			if r, ok := c.(string); ok && k == "reason" {
				x[k] = rfc3339.ReplaceAllString(r, "<time>")
			}
			stripLatest(c)
		}
	case []any:
		for _, c := range x {
			stripLatest(c)
		}
	}
}

var rfc3339 = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)

// TestRetention: a server started with a retention period prunes the
// content of older observations at its first round (keeping each
// collector's latest whole), and a bundle over them still verifies against
// the CA, saying how many were pruned.
func TestRetention(t *testing.T) {
	root := t.TempDir()
	srvDir, agentDir := filepath.Join(root, "server"), filepath.Join(root, "agent")
	srv := startServer(t, srvDir, "127.0.0.1:0")
	addr := srv.addr
	device := enroll(t, srv, agentDir, srv.token(t))
	for range 3 {
		if out, e, err := run(t, nil, agentBin, "run", "--once", "--data-dir", agentDir, "--collectors", "osinfo,secureboot"); err != nil {
			t.Fatalf("run --once: %v\n%s%s", err, out, e)
		}
	}
	srv.p.stop(t)
	time.Sleep(2 * time.Second)
	srv = startServerEnv(t, nil, srvDir, addr, "--retain-raw", "1s")
	waitFor(t, "the retention rule applied", 30*time.Second, func() bool {
		b, _ := os.ReadFile(srv.p.log)
		return strings.Contains(string(b), "retention applied")
	})
	srv.p.stop(t)
	b, _ := os.ReadFile(srv.p.log)
	if !strings.Contains(string(b), "observations_pruned=4") {
		t.Errorf("server log: want 4 observations pruned (3 runs of 2 collectors, the latest 2 kept):\n%s", tail(b, 10))
	}
	if c := counts(t, srvDir, device); c.Total != 6 {
		t.Errorf("%d observations stored after pruning, want the 6 rows kept", c.Total)
	}
	bundle := filepath.Join(root, "bundle.tar")
	if _, e, err := run(t, nil, serverBin, "export", "bundle", "--data-dir", srvDir, "--out", bundle); err != nil {
		t.Fatalf("export bundle: %v\n%s", err, e)
	}
	ca := readCert(t, filepath.Join(srvDir, "pki", "ca.crt"))
	out, e, err := run(t, nil, serverBin, "verify", "--ca-fingerprint", pki.Fingerprint(ca.Raw), bundle)
	if err != nil || !strings.Contains(out+e, "4 observations were pruned by the retention rule") {
		t.Fatalf("verify: %v\n%s%s", err, out, e)
	}
}
