package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform/snapshot"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// labWant is what the server must conclude of each lab host's evidence.
var labWant = map[string]map[string]string{
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

// labRecorded returns when each lab snapshot was recorded, and the instant
// the lab fleet is scored at: an hour after the latest recording.
func labRecorded(t *testing.T) (map[string]time.Time, time.Time) {
	t.Helper()
	recorded := map[string]time.Time{}
	var t0 time.Time
	for name := range labWant {
		h, err := snapshot.Open(filepath.Join("testdata/snapshots", name))
		if err != nil {
			t.Fatal(err)
		}
		at := h.Manifest().RecordedAt
		if at.IsZero() {
			t.Fatalf("snapshot %s has no recorded_at: the lab fleet cannot be dated", name)
		}
		recorded[name] = at
		if at.After(t0) {
			t0 = at
		}
	}
	return recorded, t0.Add(time.Hour)
}

// TestLabFleet stands up a mixed fleet from recorded snapshots: one agent
// per OS enrolls as its snapshot's host and reports it with `run --once
// --host-snapshot`; the server's verdicts must follow each host's evidence.
// Every process runs on the fixtures' clock, whatever today's date.
func TestLabFleet(t *testing.T) {
	_, t0 := labRecorded(t)
	runLabFleet(t, t0)
}

// TestLabFleetCalendar runs the lab fleet with agents that believe it is 400
// days from now, and checks nothing moves: each replay still dates its
// evidence at the instant its snapshot was recorded, the agents' TLS (on
// their clock) accepts a certificate issued on their day, and every verdict
// is the one of the run on the fixtures' day. An agent that dated evidence,
// or checked certificates, on its own or the real clock would fail it.
func TestLabFleetCalendar(t *testing.T) {
	_, t0 := labRecorded(t)
	var base, later map[string]map[string]string
	t.Run("fixtures-day", func(t *testing.T) { base = runLabFleet(t, t0) })
	t.Run("400-days-on", func(t *testing.T) { later = runLabFleet(t, time.Now().AddDate(0, 0, 400)) })
	if t.Failed() {
		return
	}
	for name, controls := range base {
		for id, v := range controls {
			w := later[name][id]
			if id == "DC-AGENT-01" { // its reason quotes when the report was received
				v, w = strings.SplitN(v, ":", 2)[0], strings.SplitN(w, ":", 2)[0]
			}
			if v != w {
				t.Errorf("%s %s: %q on the fixtures' day, %q with agents 400 days on", name, id, v, w)
			}
		}
	}
}

// runLabFleet runs the lab fleet with agents whose clocks read today, and
// returns each host's verdicts ("status: reason" by control id). The server
// scores at t0, an hour after the latest recording, whatever today is: its
// commands all run with its clock shifted there. The snapshots were
// recorded days apart, more than the default packs' 48h evidence window, so
// the server runs the default pack with its windows widened to reach the
// oldest recording: the checks are the default pack's.
func runLabFleet(t *testing.T, today time.Time) map[string]map[string]string {
	t.Helper()
	recorded, t0 := labRecorded(t)
	now := time.Now()
	srvEnv, agentEnv := clockEnv(t0.Sub(now)), clockEnv(today.Sub(now))
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	policy := labPolicy(t, root, recorded, t0)
	// `secret create` makes the CA, on the server's clock. A server run on
	// the agents' day then issues the server certificate they will check, as
	// a server running on their day would have; the server that scores, at
	// t0, serves it as it is.
	if _, errOut, err := run(t, srvEnv, serverBin, "secret", "create", "--data-dir", srvDir); err != nil {
		t.Fatalf("secret create: %v\n%s", err, errOut)
	}
	startServerEnv(t, agentEnv, srvDir, "127.0.0.1:0").p.kill() // its certificate is on disk once it listens
	srv := startServerEnv(t, srvEnv, srvDir, "127.0.0.1:0", "--policy", policy)
	ids := map[string]string{}
	for name := range labWant {
		snap := filepath.Join("testdata/snapshots", name)
		dir := filepath.Join(root, name)
		out, errOut, err := run(t, append(agentEnv, "EVIDENT_ENROLL_TOKEN="+srv.token(t)), agentBin, "enroll", "--data-dir", dir,
			"--server", srv.addr, "--host-snapshot", snap)
		if err != nil {
			t.Fatalf("enroll %s: %v\n%s%s", name, err, out, errOut)
		}
		ids[name] = deviceIDFrom(t, out)
		if _, errOut, err := run(t, agentEnv, agentBin, "run", "--once", "--data-dir", dir, "--host-snapshot", snap); err != nil {
			t.Fatalf("run --once %s: %v\n%s", name, err, errOut)
		}
	}
	checkEvidenceDated(t, srvDir, ids, recorded)
	out, errOut, err := run(t, srvEnv, serverBin, "report", "--json", "--data-dir", srvDir, "--policy", policy)
	if err != nil {
		t.Fatalf("report: %v\n%s", err, errOut)
	}
	var fleet struct {
		GeneratedAt time.Time `json:"generated_at"`
		Devices     []struct {
			ID, Hostname, OS string
			Controls         []struct{ ID, Status, Reason string }
		}
	}
	if err := json.Unmarshal([]byte(out), &fleet); err != nil {
		t.Fatal(err)
	}
	if d := fleet.GeneratedAt.Sub(t0); d < 0 || d > 10*time.Minute {
		t.Errorf("report generated at %s; want the server's clock, shortly after %s", fleet.GeneratedAt, t0)
	}
	byID := map[string]int{}
	for i, d := range fleet.Devices {
		byID[d.ID] = i
	}
	checkPeriodCLI(t, srvEnv, srvDir, policy, len(labWant), t0)
	verdicts := map[string]map[string]string{}
	for name, controls := range labWant {
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
		verdicts[name] = got
		for id, status := range controls {
			if s := got[id]; len(s) < len(status) || s[:len(status)] != status {
				t.Errorf("%s (%s, %s) %s = %s; want %s", name, d.Hostname, d.OS, id, s, status)
			}
		}
	}
	return verdicts
}

// labPolicy writes the default control pack with every evidence window
// (max_age) widened to reach the oldest recording from t0, and returns its
// path. DC-AGENT-01's window is on when reports arrive: it is kept.
func labPolicy(t *testing.T, dir string, recorded map[string]time.Time, t0 time.Time) string {
	t.Helper()
	b, err := os.ReadFile("../../server/controls/default-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var pack map[string]any
	if err := json.Unmarshal(b, &pack); err != nil {
		t.Fatal(err)
	}
	var oldest time.Duration
	for _, at := range recorded {
		oldest = max(oldest, t0.Sub(at))
	}
	window := fmt.Sprintf("%dh", int((oldest+48*time.Hour).Hours())+1)
	controls, _ := pack["controls"].([]any)
	for _, c := range controls {
		if c, ok := c.(map[string]any); ok && c["check"] != "agent_fresh" {
			c["max_age"] = window
		}
	}
	if len(controls) == 0 {
		t.Fatal("the default pack has no controls")
	}
	path := filepath.Join(dir, "lab-policy.json")
	if b, err = json.Marshal(pack); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkEvidenceDated checks that the server stored each host's evidence at
// the instant its snapshot was recorded (the replay's clock), unclamped.
func checkEvidenceDated(t *testing.T, srvDir string, ids map[string]string, recorded map[string]time.Time) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(srvDir, "evident.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for name, id := range ids {
		latest, err := st.Latest(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(latest) == 0 {
			t.Errorf("%s: no evidence stored", name)
		}
		at := recorded[name]
		for c, o := range latest {
			if o.ClockSkew || o.CollectedAt.Before(at) || o.CollectedAt.After(at.Add(5*time.Minute)) {
				t.Errorf("%s %s: collected_at %s (clock skew %v); want the snapshot's recorded instant %s",
					name, c, o.CollectedAt.Format(time.RFC3339Nano), o.ClockSkew, at.Format(time.RFC3339Nano))
			}
		}
	}
}

// checkPeriodCLI runs `report period` over the lab fleet, scored at t0, in
// every format, with the server's environment env and control pack policy.
func checkPeriodCLI(t *testing.T, env []string, srvDir, policy string, devices int, t0 time.Time) {
	t.Helper()
	day := t0.UTC().Truncate(24 * time.Hour)
	from, to := day.Add(-24*time.Hour).Format("2006-01-02"), day.Add(48*time.Hour).Format("2006-01-02")
	period := func(format string, extra ...string) string {
		t.Helper()
		out, errOut, err := run(t, env, serverBin, append([]string{"report", "period", "--data-dir", srvDir, "--policy", policy, "--from", from, "--to", to, "--format", format}, extra...)...)
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
		if _, errOut, err := run(t, env, serverBin, append([]string{"report", "period", "--data-dir", srvDir}, bad...)...); err == nil || errOut == "" {
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
