package e2e

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestLabFleet stands up a mixed fleet from recorded snapshots: one agent
// per OS enrolls as its snapshot's host and reports it with `run --once
// --host-snapshot`; the server's verdicts must follow each host's evidence.
func TestLabFleet(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	srv := startServer(t, srvDir, "127.0.0.1:0")
	want := map[string]map[string]string{
		"linux-luks-laptop": {"DC-ENC-01": "pass", "DC-FW-01": "pass", "DC-BOOT-01": "pass", "DC-PATCH-02": "pass", "DC-MAL-01": "pass", "DC-LOCK-01": "pass"},
		"linux-partial":     {"DC-ENC-01": "fail", "DC-FW-01": "fail", "DC-BOOT-01": "fail", "DC-TPM-01": "fail", "DC-LOCK-01": "unknown"},
		"darwin-compliant":  {"DC-ENC-01": "pass", "DC-FW-01": "pass", "DC-BOOT-01": "pass", "DC-TPM-01": "not_applicable", "DC-MAL-01": "pass", "DC-LOCK-01": "pass"},
		"darwin-noncompliant": {"DC-ENC-01": "fail", "DC-FW-01": "fail", "DC-BOOT-01": "fail", "DC-PATCH-01": "fail",
			"DC-MAL-01": "fail", "DC-LOCK-01": "fail"},
		"windows-compliant": {"DC-ENC-01": "pass", "DC-FW-01": "pass", "DC-BOOT-01": "pass", "DC-PATCH-02": "pass", "DC-MAL-01": "pass", "DC-LOCK-01": "pass"},
		// A third-party antivirus registered with Security Center protects
		// while Defender is passive.
		"windows-partial": {"DC-ENC-01": "fail", "DC-FW-01": "fail", "DC-MAL-01": "pass", "DC-LOCK-01": "fail"},
	}
	ids := map[string]string{}
	for name := range want {
		snap := filepath.Join("testdata/snapshots", name)
		dir := filepath.Join(root, name)
		out, errOut, err := run(t, []string{"EVIDENT_ENROLL_TOKEN=" + srv.token(t)}, agentBin, "enroll", "--data-dir", dir,
			"--server", srv.addr, "--host-snapshot", snap)
		if err != nil {
			t.Fatalf("enroll %s: %v\n%s%s", name, err, out, errOut)
		}
		ids[name] = deviceIDFrom(t, out)
		if _, errOut, err := run(t, nil, agentBin, "run", "--once", "--data-dir", dir, "--host-snapshot", snap); err != nil {
			t.Fatalf("run --once %s: %v\n%s", name, err, errOut)
		}
	}
	out, errOut, err := run(t, nil, serverBin, "report", "--json", "--data-dir", srvDir)
	if err != nil {
		t.Fatalf("report: %v\n%s", err, errOut)
	}
	var fleet struct {
		Devices []struct {
			ID, Hostname, OS string
			Controls         []struct{ ID, Status, Reason string }
		}
	}
	if err := json.Unmarshal([]byte(out), &fleet); err != nil {
		t.Fatal(err)
	}
	byID := map[string]int{}
	for i, d := range fleet.Devices {
		byID[d.ID] = i
	}
	for name, controls := range want {
		i, ok := byID[ids[name]]
		if !ok {
			t.Errorf("%s (%s) missing from the report", name, ids[name])
			continue
		}
		d := fleet.Devices[i]
		got := map[string]string{}
		for _, c := range d.Controls {
			got[c.ID] = c.Status + ": " + c.Reason
		}
		for id, status := range controls {
			if s := got[id]; len(s) < len(status) || s[:len(status)] != status {
				t.Errorf("%s (%s, %s) %s = %s; want %s", name, d.Hostname, d.OS, id, s, status)
			}
		}
	}
}

func deviceIDFrom(t *testing.T, enrollOut string) string {
	t.Helper()
	var id string
	for _, f := range splitFields(enrollOut) {
		if len(f) == 36 && f[:4] == "dev_" {
			id = f
		}
	}
	if id == "" {
		t.Fatalf("no device id in %q", enrollOut)
	}
	return id
}

func splitFields(s string) []string {
	var out []string
	cur := ""
	for _, r := range s {
		if r == ' ' || r == '\n' || r == '\t' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(r)
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}
