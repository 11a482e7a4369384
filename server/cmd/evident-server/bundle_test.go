package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// seedDataDir makes a data dir as a running server leaves it: CA and a
// database with one device's evidence.
func seedDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.LoadOrCreate(filepath.Join(dir, "pki")); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(dbPath(dir), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	if _, err := st.EnrollDevice(ctx, store.Device{ID: "dev-1", Hostname: "laptop-1", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		obs := []store.Observation{{Seq: uint64(i + 1), Collector: "os", Status: "ok", CollectedAt: t0, Payload: json.RawMessage(`{"v":1}`)}}
		if _, err := st.Ingest(ctx, "dev-1", obs, t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := states.Record(ctx, st, "dev-1", []store.ControlState{{ControlID: "DC-FW-01", Status: store.Pass}}, nil, t0); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestExportAndVerifyCommands(t *testing.T) {
	dir := seedDataDir(t)
	out := filepath.Join(t.TempDir(), "evidence.tar")
	report := filepath.Join(t.TempDir(), "period-report.json")
	os.WriteFile(report, []byte(`{"period":"2026-02"}`), 0o600)
	var stdout, stderr bytes.Buffer
	err := cmdExportBundle([]string{"--data-dir", dir, "--out", out, "--from", "2026-02-01T00:00:00Z", "--to", "2026-02-01T02:00:00Z",
		"--device", "dev-1", "--attach", report}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("export bundle: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "1 devices, 2 observations") {
		t.Errorf("export output = %q, want 1 device, 2 observations (the third is after --to)", stdout.String())
	}
	ca, _ := pki.LoadOrCreate(filepath.Join(dir, "pki"))

	// Valid: exit 0 with a summary, pinned (or unpinned when allowed).
	for _, args := range [][]string{{"--allow-unpinned", out}, {"--ca-fingerprint", ca.Fingerprint(), out}, {out, "--ca-fingerprint", "SHA256:" + strings.ToUpper(ca.Fingerprint())}} {
		stdout.Reset()
		if err := cmdVerify(args, &stdout, &stderr); err != nil {
			t.Errorf("verify %v: %v", args, err)
		}
		if !strings.Contains(stdout.String(), "bundle verified: 1 devices, 2 observations (2 chained, 0 unchained), 1 intervals, 7 files") {
			t.Errorf("verify %v output = %q", args, stdout.String())
		}
	}

	// Unpinned without --allow-unpinned: the summary, then exit 1 saying so.
	stdout.Reset()
	err = cmdVerify([]string{out}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "not pinned") || !strings.Contains(stdout.String(), "signer NOT pinned") {
		t.Errorf("verify without a pin = %v\n%s", err, stdout.String())
	}
	if code := cli.ExitCode("evident-server", err, &stderr); code != 1 {
		t.Errorf("unpinned verify exit code = %d, want 1", code)
	}

	// --pubkey pins the signing key: the bundle's own key passes, another fails.
	pub := filepath.Join(t.TempDir(), "pub.pem")
	if _, err := os.Stat(filepath.Join(dir, "pki", "evidence-signing.crt")); err != nil {
		t.Fatalf("evidence signing certificate not created: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "pki", "evidence-signing.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("evidence signing key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if err := cmdExportBundle([]string{"--data-dir", dir, "--out", out + "2"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	extractPubkey(t, out, pub)
	if err := cmdVerify([]string{"--pubkey", pub, out + "2"}, &stdout, &stderr); err != nil {
		t.Errorf("verify --pubkey own key: %v", err)
	}
	otherDir := seedDataDir(t)
	if err := cmdExportBundle([]string{"--data-dir", otherDir, "--out", out + "3"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	err = cmdVerify([]string{"--pubkey", pub, out + "3"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "is not the pinned public key") {
		t.Errorf("verify with another server's key pinned = %v", err)
	}
	if code := cli.ExitCode("evident-server", err, &stderr); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}

	// Altered: exit 1 naming what failed.
	b, _ := os.ReadFile(out)
	i := bytes.Index(b, []byte(`"collector":"os"`))
	b[i+13] = 'X'
	bad := filepath.Join(t.TempDir(), "bad.tar")
	os.WriteFile(bad, b, 0o600)
	err = cmdVerify([]string{"--allow-unpinned", bad}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "device dev-1: observation seq 1 (chain index 1): chain hash mismatch — record altered") {
		t.Errorf("verify altered bundle = %v", err)
	}

	// Usage errors: exit 2.
	for _, args := range [][]string{{}, {"a", "b"}, {"--nope", out}} {
		if err := cmdVerify(args, &stdout, &stderr); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("verify %v = %v, want a usage error", args, err)
		}
	}
	if err := cmdExportBundle([]string{"--data-dir", dir}, &stdout, &stderr); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("export bundle without --out = %v, want a usage error", err)
	}
	if err := cmdExportBundle([]string{"--data-dir", dir, "--out", out, "--from", "yesterday"}, &stdout, &stderr); err == nil {
		t.Error("export bundle with a bad --from succeeded")
	}
	if err := cmdExportBundle([]string{"--data-dir", t.TempDir(), "--out", out}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Errorf("export bundle without a database = %v", err)
	}
}

// extractPubkey copies pubkey.pem out of a bundle, as an auditor keeps it
// from a bundle they trust.
func extractPubkey(t *testing.T, bundlePath, dst string) {
	t.Helper()
	f, err := os.Open(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no pubkey.pem in %s: %v", bundlePath, err)
		}
		if h.Name == "pubkey.pem" {
			b, _ := io.ReadAll(tr)
			os.WriteFile(dst, b, 0o600)
			return
		}
	}
}
