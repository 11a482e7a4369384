package e2e

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/internal/enrolltoken"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/ingest/ingesttest"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestHelloRefreshesDeviceFacts: a device enrolled without a serial number
// (an agent older than the hardware identity) connects with an agent that
// reads one: the server records it, with the new hostname and agent
// version, over real gRPC and mTLS; the machine id it enrolled with stays.
func TestHelloRefreshesDeviceFacts(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := ingesttest.Start(t, &ingest.Server{Store: st, Log: logger})
	secret := enrolltoken.NewSecret()
	if err := st.CreateEnrollSecret(ctx, store.EnrollSecret{ID: "sec_facts", Hash: enrolltoken.HashSecret(secret), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id, err := identity.Enroll(ctx, identity.Dir(dir), srv.Addr, enrolltoken.Token{Secret: secret, CAPin: srv.CA.Fingerprint()}.String(),
		&identity.HostFacts{Hostname: "LAPTOP-7F3K", Goos: "windows", MachineId: "m-1", AgentVersion: "0.9.0"}, identity.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := st.Device(ctx, id.DeviceID); err != nil || d.SerialNumber != "" {
		t.Fatalf("enrolled device %+v, %v: want no serial number yet", d, err)
	}
	reg, err := collectors.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agent.Open(agent.Config{DataDir: dir, Interval: time.Hour, Log: logger, Registry: reg, Version: "1.0.0",
		Facts: &identity.HostFacts{Hostname: "laptop-ada", Goos: "windows", MachineId: "m-other", SerialNumber: "5CD1234XYZ", AgentVersion: "1.0.0"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx, false, 0) }()
	defer func() { cancel(); <-done; ag.Close() }()

	// The device's record changes first, then the change is audited (a
	// write of its own): wait for both.
	deadline := time.Now().Add(30 * time.Second)
	var d store.Device
	var log []store.AuditEntry
	for {
		if d, err = st.Device(ctx, id.DeviceID); err != nil {
			t.Fatal(err)
		}
		if log, err = st.AuditLog(ctx, 100); err != nil {
			t.Fatal(err)
		}
		// A new hostname can move the device in or out of a control's
		// scope: it is audited.
		var audited bool
		for _, e := range log {
			audited = audited || (e.Action == "device.facts-changed" && strings.Contains(e.Detail, `hostname "LAPTOP-7F3K" -> "laptop-ada"`))
		}
		if d.SerialNumber == "5CD1234XYZ" && audited {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: device %+v (want serial 5CD1234XYZ), audit log %+v (want the hostname change)", d, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.Hostname != "laptop-ada" || d.AgentVersion != "1.0.0" || d.MachineID != "m-1" || d.GOOS != "windows" {
		t.Errorf("device after the Hello: %+v; want the new hostname and agent version, the enrolled machine id", d)
	}
}
