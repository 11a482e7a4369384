package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	checkPeriodCLI(t, srvDir, len(want))
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

// checkPeriodCLI runs `report period` over the lab fleet in every format.
func checkPeriodCLI(t *testing.T, srvDir string, devices int) {
	t.Helper()
	day := time.Now().UTC().Truncate(24 * time.Hour)
	from, to := day.Add(-24*time.Hour).Format("2006-01-02"), day.Add(48*time.Hour).Format("2006-01-02")
	period := func(format string, extra ...string) string {
		t.Helper()
		out, errOut, err := run(t, nil, serverBin, append([]string{"report", "period", "--data-dir", srvDir, "--from", from, "--to", to, "--format", format}, extra...)...)
		if err != nil {
			t.Fatalf("report period --format %s: %v\n%s", format, err, errOut)
		}
		return out
	}
	var rep struct {
		Controls []struct {
			ID         string
			Population int
			Exceptions []struct{ DeviceID string }
		}
		Devices []struct{ ID string }
		Sample  []struct{ ID string }
	}
	if err := json.Unmarshal([]byte(period("json", "--seed", "7", "--sample", "3")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Devices) != devices || len(rep.Sample) != 3 || len(rep.Controls) != 9 {
		t.Errorf("period report: %d devices, %d sampled, %d controls; want %d, 3, 9", len(rep.Devices), len(rep.Sample), len(rep.Controls), devices)
	}
	for _, c := range rep.Controls {
		if c.ID == "DC-ENC-01" && (c.Population != devices || len(c.Exceptions) == 0) {
			t.Errorf("DC-ENC-01 over the lab fleet: population %d, %d exceptions", c.Population, len(c.Exceptions))
		}
	}
	if csv := period("csv"); !strings.HasPrefix(csv, "control_id,control_title,criteria,device_id,hostname,status,start,end,duration_seconds,open,cause,waived,waiver_id,approver\n") ||
		strings.Count(csv, "\n") < 2 {
		t.Errorf("period CSV:\n%s", csv)
	}
	var doc struct {
		AR struct {
			Results []struct {
				Findings []struct{ Target struct{ TargetID string } }
			}
		} `json:"assessment-results"`
	}
	if err := json.Unmarshal([]byte(period("oscal")), &doc); err != nil || len(doc.AR.Results) != 1 || len(doc.AR.Results[0].Findings) != 9 {
		t.Errorf("OSCAL export: %v, %+v", err, doc)
	}
	if j := period("json"); !strings.Contains(j, `"patch_sla"`) || strings.Contains(period("json", "--patch-sla", "0"), `"patch_sla"`) {
		t.Error("the patch SLA figures are missing by default, or present with --patch-sla 0")
	}
	if !strings.Contains(period("text"), "Evident SOC 2 Type II period report") {
		t.Error("text period report lacks its title")
	}
	for _, bad := range [][]string{{"--from", to, "--to", from}, {"--from", "yesterday", "--to", to}, {"--from", from}, {"--from", from, "--to", to, "--format", "xml"}} {
		if _, errOut, err := run(t, nil, serverBin, append([]string{"report", "period", "--data-dir", srvDir}, bad...)...); err == nil || errOut == "" {
			t.Errorf("report period %v: err %v, stderr %q; want a refusal that says why", bad, err, errOut)
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
