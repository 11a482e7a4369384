package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

func TestInventoryImportCommand(t *testing.T) {
	dir := seedDataDir(t)
	csvPath := filepath.Join(t.TempDir(), "jamf.csv")
	if err := os.WriteFile(csvPath, []byte("\uFEFFSerial Number,Computer Name,Model,Assigned User\r\nC02ABC,laptop-1,MBP,ada\r\nC02ABC,laptop-9,MBP,bob\r\n,linux-2,,\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	// The file may come before or after the flags.
	for _, args := range [][]string{{"--data-dir", dir, "--source", "Jamf export 2026-11", csvPath}, {csvPath, "--data-dir", dir, "--source", "Jamf export 2026-11"}} {
		stdout.Reset()
		stderr.Reset()
		if err := cmdInventoryImport(args, &stdout, &stderr); err != nil {
			t.Fatalf("inventory import %v: %v\n%s", args, err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "imported 3 devices from jamf.csv") {
			t.Errorf("output = %q", stdout.String())
		}
		if !strings.Contains(stderr.String(), `warning: duplicate serial number "C02ABC" on lines 2, 3`) {
			t.Errorf("stderr = %q, want the duplicate serial number", stderr.String())
		}
	}
	st, err := sqlite.Open(dbPath(dir), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	imp, rows, err := st.Inventory(context.Background())
	if err != nil || imp.Source != "Jamf export 2026-11" || imp.Filename != "jamf.csv" || len(imp.SHA256) != 64 || len(rows) != 3 || rows[2].Hostname != "linux-2" {
		t.Errorf("stored inventory = %+v %+v %v", imp, rows, err)
	}

	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("serial,hostname\nSN1,h1\n,,\nx,\"y\n"), 0o600)
	if err := cmdInventoryImport([]string{"--data-dir", dir, bad}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("import of a bad CSV = %v, want an error naming line 4", err)
	}
	if _, rows, _ := st.Inventory(context.Background()); len(rows) != 3 {
		t.Errorf("a failed import changed the inventory: %d rows", len(rows))
	}
}

func TestInventoryImportUsage(t *testing.T) {
	dir := seedDataDir(t)
	for _, args := range [][]string{
		{"--data-dir", dir},
		{"--data-dir", dir, "a.csv", "b.csv"},
		{"--data-dir", dir, "--no-such-flag", "a.csv"},
	} {
		var stdout, stderr bytes.Buffer
		if err := cmdInventoryImport(args, &stdout, &stderr); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("inventory import %v = %v, want a usage error", args, err)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := cmdInventoryImport([]string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h = %v, want flag.ErrHelp", err)
	}
	if err := cmdInventoryImport([]string{"--data-dir", dir, filepath.Join(dir, "missing.csv")}, &stdout, &stderr); err == nil || errors.Is(err, cli.ErrUsage) {
		t.Errorf("import of a missing file = %v, want a failure", err)
	}
}

func TestWaiverCommands(t *testing.T) {
	dir := seedDataDir(t)
	var stdout, stderr bytes.Buffer
	run := func(f func([]string, *bytes.Buffer, *bytes.Buffer) error, args ...string) (string, error) {
		stdout.Reset()
		stderr.Reset()
		err := f(append([]string{"--data-dir", dir}, args...), &stdout, &stderr)
		return stdout.String(), err
	}
	add := func(args []string, o, e *bytes.Buffer) error { return cmdWaiverAdd(args, o, e) }
	list := func(args []string, o, e *bytes.Buffer) error { return cmdWaiverList(args, o, e) }
	revoke := func(args []string, o, e *bytes.Buffer) error { return cmdWaiverRevoke(args, o, e) }

	// An expired waiver, recorded directly: waiver add refuses an expiry in
	// the past.
	st, err := sqlite.Open(dbPath(dir), false)
	if err != nil {
		t.Fatal(err)
	}
	expired := store.Waiver{ID: "wvr_0000000000e1", DeviceID: "dev-1", ControlID: "DC-ENC-01", Reason: "replacement on order", Approver: "CISO",
		CreatedBy: "alice", CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), StartsAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		ExpiresAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := st.CreateWaiver(context.Background(), expired); err != nil {
		t.Fatal(err)
	}
	st.Close()

	out, err := run(add, "--device", "dev-1", "--control", "DC-ENC-01", "--reason", "replacement on order", "--approver", "CISO",
		"--starts", "2098-01-01", "--expires", "2098-12-31", "--created-by", "alice")
	if err != nil {
		t.Fatalf("waiver add: %v\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`^waiver (wvr_[0-9a-f]{12}): device dev-1, DC-ENC-01, from 2098-01-01T00:00:00Z until 2099-01-01T00:00:00Z, approved by CISO\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("waiver add output = %q", out)
	}
	id := m[1]
	// An unknown control is accepted with a warning; every control is "*".
	if _, err := run(add, "--device", "dev-1", "--control", "NOPE-1", "--reason", "r", "--approver", "a", "--expires", "2099-01-01T00:00:00Z",
		"--starts", "2098-06-01"); err != nil || !strings.Contains(stderr.String(), "warning: NOPE-1 is not a control") {
		t.Errorf("waiver add of an unknown control: %v, stderr %q", err, stderr.String())
	}
	if _, err := run(add, "--device", "dev-1", "--reason", "r", "--approver", "a", "--starts", "2098-06-01", "--expires", "2099-01-01"); err != nil {
		t.Fatalf("waiver add for every control: %v", err)
	}

	// Expired (2025) waivers are listed only with --all.
	out, err = run(list)
	if err != nil {
		t.Fatalf("waiver list: %v", err)
	}
	if strings.Contains(out, expired.ID) || strings.Count(out, "pending") != 3 || !strings.Contains(out, " * ") {
		t.Errorf("waiver list =\n%s\nwant the three future waivers only", out)
	}
	out, err = run(list, "--all")
	if err != nil || !strings.Contains(out, expired.ID) || !strings.Contains(out, "replacement on order") {
		t.Errorf("waiver list --all = %v\n%s", err, out)
	}

	out, err = run(revoke, id)
	if err != nil || !strings.HasPrefix(out, "waiver "+id+" revoked at ") {
		t.Errorf("waiver revoke = %v, %q", err, out)
	}
	out, _ = run(list, "--all")
	if !strings.Contains(out, "revoked ") {
		t.Errorf("waiver list --all after revoke =\n%s", out)
	}
	if _, err := run(revoke, "wvr_000000000000"); err == nil || !strings.Contains(err.Error(), "no waiver") {
		t.Errorf("revoke of an unknown waiver = %v", err)
	}
	if _, err := run(add, "--device", "dev-unknown", "--reason", "r", "--approver", "a", "--starts", "2098-06-01", "--expires", "2099-01-01"); err == nil || !strings.Contains(err.Error(), "no device") {
		t.Errorf("waiver add for an unknown device = %v", err)
	}
	if _, err := run(add, "--device", "dev-1", "--reason", "r", "--approver", "a", "--starts", "2097-01-01", "--expires", "2098-01-02"); err == nil || !strings.Contains(err.Error(), "more than 1 year") {
		t.Errorf("waiver add over a year = %v", err)
	}
	if _, err := run(add, "--device", "dev-1", "--reason", "r", "--approver", "a", "--expires", "next tuesday"); err == nil || !strings.Contains(err.Error(), `expires "next tuesday"`) {
		t.Errorf("waiver add with a bad date = %v", err)
	}
}

func TestWaiverUsage(t *testing.T) {
	dir := seedDataDir(t)
	tests := []struct {
		name string
		f    func([]string, *bytes.Buffer, *bytes.Buffer) error
		args []string
	}{
		// A missing --device, --reason, --approver or --expires is refused
		// by the admin service (and audited): see TestAdminRefusals.
		{"add with a bad --as", func(a []string, o, e *bytes.Buffer) error { return cmdWaiverAdd(a, o, e) }, []string{"--as", "x\ny", "--device", "dev-1", "--reason", "r", "--approver", "a", "--expires", "2099-01-01"}},
		{"add with an argument", func(a []string, o, e *bytes.Buffer) error { return cmdWaiverAdd(a, o, e) }, []string{"--device", "dev-1", "--reason", "r", "--approver", "a", "--expires", "2099-01-01", "extra"}},
		{"list with an argument", func(a []string, o, e *bytes.Buffer) error { return cmdWaiverList(a, o, e) }, []string{"extra"}},
		{"revoke without id", func(a []string, o, e *bytes.Buffer) error { return cmdWaiverRevoke(a, o, e) }, nil},
		{"revoke with two ids", func(a []string, o, e *bytes.Buffer) error { return cmdWaiverRevoke(a, o, e) }, []string{"w1", "w2"}},
		{"revoke with a bad flag", func(a []string, o, e *bytes.Buffer) error { return cmdWaiverRevoke(a, o, e) }, []string{"--bogus", "w1"}},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if err := tt.f(append([]string{"--data-dir", dir}, tt.args...), &stdout, &stderr); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%s: %v, want a usage error", tt.name, err)
		}
		if stderr.Len() == 0 {
			t.Errorf("%s: nothing on stderr", tt.name)
		}
	}
}
