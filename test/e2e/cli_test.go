package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/collectors"
)

func TestCollectJSONWithoutServer(t *testing.T) {
	out, errOut, err := run(t, nil, agentBin, "collect", "--json", "--collectors", "osinfo,tpm,secureboot")
	if err != nil {
		t.Fatalf("collect: %v\n%s", err, errOut)
	}
	var obs []collectors.Observation
	if err := json.Unmarshal([]byte(out), &obs); err != nil {
		t.Fatalf("collect --json is not JSON: %v\n%s", err, out)
	}
	if len(obs) != 3 {
		t.Fatalf("got %d observations, want 3", len(obs))
	}
	for i, want := range []string{"osinfo", "secureboot", "tpm"} {
		if obs[i].Collector != want || obs[i].Status != collectors.StatusOK || !json.Valid(obs[i].Payload) {
			t.Errorf("observation %d: %s %s %s; want %s ok with a JSON payload", i, obs[i].Collector, obs[i].Status, obs[i].Error, want)
		}
	}
	if _, errOut, err := run(t, nil, agentBin, "collect", "--collectors", "nosuch"); err == nil || !strings.Contains(errOut, `unknown collector "nosuch"`) {
		t.Errorf("unknown collector: err %v, stderr %q", err, errOut)
	}
}

func TestStatusOfRunningAgent(t *testing.T) {
	root := t.TempDir()
	srvDir, agentDir := filepath.Join(root, "s"), filepath.Join(root, "a")
	srv := startServer(t, srvDir, "127.0.0.1:0")
	device := enroll(t, srv, agentDir, srv.token(t))

	if _, errOut, err := run(t, nil, agentBin, "status", "--data-dir", agentDir); err == nil || !strings.Contains(errOut, "no running agent") {
		t.Fatalf("status without a daemon: err %v, stderr %q; want a clear 'no running agent'", err, errOut)
	}
	ag := start(t, "agent.log", agentBin, "run", "--data-dir", agentDir, "--collectors", "osinfo,tpm", "--interval", "1h")
	var st agent.Status
	waitFor(t, "status to report the first ack and the server's posture", time.Minute, func() bool {
		out, _, err := run(t, nil, agentBin, "status", "--json", "--data-dir", agentDir)
		return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Uplink.LastAckSeq >= 2 && st.Posture != nil
	})
	// Only osinfo and tpm are collected: disk encryption, among others, is
	// unknown, and the server says how to fix it on Linux.
	var enc *agent.ControlStatus
	for i, c := range st.Posture.Attention {
		if c.ID == "DC-ENC-01" {
			enc = &st.Posture.Attention[i]
		}
	}
	if st.Posture.Compliant || enc == nil || enc.Status != "unknown" || !strings.Contains(enc.Reason, "no diskencryption evidence") ||
		!strings.Contains(enc.Remediation, "LUKS2") {
		t.Errorf("posture = %+v; want not compliant, DC-ENC-01 unknown with the Linux fix", st.Posture)
	}
	if st.DeviceID != device || st.Server != srv.addr || st.Cycles != 1 || st.Outbox.Depth != 0 || !st.Uplink.Connected {
		t.Fatalf("status = %+v; want device %s, server %s, 1 cycle, empty outbox, connected", st, device, srv.addr)
	}
	out, _, err := run(t, nil, agentBin, "status", "--data-dir", agentDir)
	if err != nil || !strings.Contains(out, device) || !strings.Contains(out, "connected") || !strings.Contains(out, "needs attention:") ||
		!strings.Contains(out, "  DC-ENC-01 UNKNOWN: ") || !strings.Contains(out, "how to fix: Encrypt every fixed volume with LUKS2") {
		t.Fatalf("status text: err %v\n%s", err, out)
	}
	// While the daemon holds the outbox, a second daemon must refuse clearly.
	if _, errOut, err := run(t, nil, agentBin, "run", "--once", "--data-dir", agentDir); err == nil || !strings.Contains(errOut, "locked") {
		t.Fatalf("second agent on the same data dir: err %v, stderr %q", err, errOut)
	}
	ag.stop(t) // SIGTERM: exits 0
}

func TestRunRefusesBadSettings(t *testing.T) {
	root := t.TempDir()
	srv := startServer(t, filepath.Join(root, "s"), "127.0.0.1:0")
	agentDir := filepath.Join(root, "a")
	enroll(t, srv, agentDir, srv.token(t))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"server address without a port", []string{"--server", "noport"}, `server "noport" from flag --server: want HOST:PORT`},
		{"named config file missing", []string{"--config", filepath.Join(root, "none.yaml")}, "config file: open"},
		{"outbox bound too small", []string{"--outbox-max-bytes", "1000"}, "below the minimum"},
		{"not enrolled", []string{"--data-dir", filepath.Join(root, "empty")}, "not enrolled"},
		{"unknown collector", []string{"--collectors", "nosuch"}, "unknown collector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The delivery timeout outlasts run's 3-minute kill: a refusal
			// that waited for it would show up as a killed process.
			args := append([]string{"run", "--once", "--once-timeout", "10m", "--data-dir", agentDir}, tc.args...)
			_, errOut, err := run(t, nil, agentBin, args...)
			if err == nil || !strings.Contains(errOut, tc.want) {
				t.Fatalf("err %v, stderr %q; want a refusal mentioning %q", err, errOut, tc.want)
			}
		})
	}
}
