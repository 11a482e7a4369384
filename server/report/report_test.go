package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/internal/golden"
	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/report"
	"github.com/evident-dev/evident/server/scorer"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

var (
	enrolled = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	first    = time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC) // first report received
	second   = time.Date(2026, 3, 1, 11, 30, 0, 0, time.UTC)
	now      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // report time
)

const (
	alphaID = "dev_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	betaID  = "dev_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func obs(t *testing.T, seq uint64, collector string, at time.Time, payload any, sources ...evidence.Source) store.Observation {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	o := store.Observation{Seq: seq, Collector: collector, CollectedAt: at, Status: "ok", ParserVersion: parserVersion(collector), Payload: b}
	if len(sources) > 0 {
		if o.Sources, err = json.Marshal(sources); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// parserVersion is the version today's agent reports for a collector: the
// fixtures are payloads of a current agent.
func parserVersion(collector string) int {
	if v, ok := evidence.CurrentVersion(collector); ok {
		return v
	}
	return 1
}

// score evaluates p on the device's stored evidence as of at and records the
// states, as the ingest server does after each report.
func score(t *testing.T, st store.Store, p *controls.Policy, id string, at time.Time) {
	t.Helper()
	if err := scorer.Score(context.Background(), st, p, id, at); err != nil {
		t.Fatal(err)
	}
}

// fleet enrolls alpha (full evidence, two reports, scored twice) and beta
// (enrolled, never reported) with policy p.
func fleet(t *testing.T, p *controls.Policy) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	st := openStore(t)
	for _, d := range []store.Device{
		{ID: alphaID, Hostname: "alpha", GOOS: "linux", GOARCH: "amd64", OSVersion: "Debian GNU/Linux 12", MachineID: "m-alpha", AgentVersion: "0.1.0", EnrolledAt: enrolled},
		{ID: betaID, Hostname: "beta", GOOS: "linux", GOARCH: "arm64", MachineID: "m-beta", EnrolledAt: enrolled.Add(time.Hour)},
	} {
		if _, err := st.EnrollDevice(ctx, d); err != nil {
			t.Fatalf("enroll %s: %v", d.Hostname, err)
		}
		score(t, st, p, d.ID, d.EnrolledAt) // as enrollment does
	}
	yes, no := true, false
	exit0, exit1 := 0, 1
	c := first.Add(-5 * time.Minute)
	indexAt := c.Add(-3 * time.Hour)
	report1 := []store.Observation{
		obs(t, 1, evidence.DiskEncryption, c, evidence.DiskEncryptionPayload{Volumes: []evidence.DiskVolume{
			{Device: "/dev/nvme0n1p3", Mountpoints: []string{"/"}, Role: "system", Encrypted: true, Method: "LUKS2"}}},
			evidence.Source{Kind: "command", Ref: "/usr/bin/lsblk -J -b -o NAME,TYPE", ExitCode: &exit0}),
		obs(t, 2, evidence.Patches, c, evidence.PatchesPayload{Manager: "apt", OS: evidence.OSRelease{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"},
			Index:       &evidence.PackageIndex{Refreshed: &indexAt, Source: "/var/lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_InRelease"},
			AutoUpdates: &evidence.AutoUpdates{Mechanism: "unattended-upgrades", Detail: "APT::Periodic::Unattended-Upgrade is 0"}}),
		obs(t, 3, evidence.Firewall, c, evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny,
			Reason: "IPv4 inbound denied by default; IPv6 inbound denied by default", DecidedBy: "nftables",
			Backends: []evidence.FirewallBackend{{Name: "nftables", Active: true, InboundDefaultDeny: true, Detail: "chain input policy drop"}}},
			evidence.Source{Kind: "command", Ref: "/usr/sbin/nft -j list ruleset", ExitCode: &exit0},
			evidence.Source{Kind: "command", Ref: "/usr/sbin/ufw status", ExitCode: &exit1, Error: "ufw is not running"}),
		obs(t, 4, evidence.SecureBoot, c, evidence.SecureBootPayload{UEFI: true, Enabled: &yes, SetupMode: &no, ShimValidation: &yes},
			evidence.Source{Kind: "file", Ref: "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"}),
		obs(t, 5, evidence.TPM, c, evidence.TPMPayload{Present: true, Version: "2.0"}),
	}
	if _, err := st.Ingest(ctx, alphaID, report1, first); err != nil {
		t.Fatal(err)
	}
	score(t, st, p, alphaID, first)
	// A second disk observation: the same status, so the intervals that
	// hold count a second evaluation.
	report2 := []store.Observation{obs(t, 6, evidence.DiskEncryption, second.Add(-time.Minute), evidence.DiskEncryptionPayload{Volumes: []evidence.DiskVolume{
		{Device: "/dev/nvme0n1p3", Mountpoints: []string{"/"}, Role: "system", Encrypted: true, Method: "LUKS2"}}})}
	if _, err := st.Ingest(ctx, alphaID, report2, second); err != nil {
		t.Fatal(err)
	}
	score(t, st, p, alphaID, second)
	return st
}

func build(t *testing.T, st store.Store, p *controls.Policy, opt report.Options) *report.Fleet {
	t.Helper()
	f, err := report.Build(context.Background(), st, p, opt)
	if err != nil {
		t.Fatalf("Build(%+v): %v", opt, err)
	}
	return f
}

func text(t *testing.T, f *report.Fleet) string {
	t.Helper()
	var b bytes.Buffer
	if err := report.WriteText(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestBuildFleet(t *testing.T) {
	p := controls.Default()
	st := fleet(t, p)
	f := build(t, st, p, report.Options{Now: now})

	if !f.GeneratedAt.Equal(now) || f.Policy != p.Name {
		t.Errorf("generated %s, policy %q", f.GeneratedAt, f.Policy)
	}
	if len(f.Devices) != 2 || f.Devices[0].ID != alphaID || f.Devices[1].ID != betaID {
		t.Fatalf("devices = %+v, want alpha then beta", f.Devices)
	}
	alpha, beta := f.Devices[0], f.Devices[1]

	want := map[string]string{
		"DC-ENC-01": store.Pass, "DC-PATCH-01": store.Pass, "DC-PATCH-02": store.Fail, "DC-FW-01": store.Pass,
		"DC-BOOT-01": store.Pass, "DC-TPM-01": store.Fail, "DC-MAL-01": store.Unknown, "DC-LOCK-01": store.Unknown, "DC-AGENT-01": store.Pass,
	}
	if len(alpha.Controls) != len(p.Controls) {
		t.Fatalf("alpha has %d controls, want %d", len(alpha.Controls), len(p.Controls))
	}
	for _, c := range alpha.Controls {
		if c.Status != want[c.ID] {
			t.Errorf("alpha %s = %s (%s), want %s", c.ID, c.Status, c.Reason, want[c.ID])
		}
	}
	if alpha.Compliant {
		t.Errorf("alpha is compliant with a failing control")
	}
	if alpha.OS != "linux Debian GNU/Linux 12" || alpha.AgentVersion != "0.1.0" || alpha.LastSeenAt == nil || !alpha.LastSeenAt.Equal(second) {
		t.Errorf("alpha = os %q, agent %q, last seen %v", alpha.OS, alpha.AgentVersion, alpha.LastSeenAt)
	}
	h := alpha.History
	if h.Observations != 6 || h.FirstSeq != 1 || h.LastSeq != 6 || !h.Since.Equal(first.Add(-5*time.Minute)) || !h.Until.Equal(second.Add(-time.Minute)) {
		t.Errorf("alpha history = %+v", h)
	}
	// Recorded at enrollment (9, nothing reported yet), then the 7 that
	// the first report changed; the second report changed none.
	if h.Intervals != len(p.Controls)+7 {
		t.Errorf("alpha intervals = %d, want %d", h.Intervals, len(p.Controls)+7)
	}
	enc := alpha.Controls[0]
	if enc.Since == nil || !enc.Since.Equal(first) || enc.Checks != 2 {
		t.Errorf("DC-ENC-01 since %v, %d evaluations; want %s, 2", enc.Since, enc.Checks, first)
	}
	if enc.Evidence == nil || enc.Evidence.Seq != 6 || enc.Evidence.Collector != evidence.DiskEncryption {
		t.Errorf("DC-ENC-01 evidence = %+v, want diskencryption seq 6", enc.Evidence)
	}

	if beta.Compliant || beta.LastSeenAt != nil || beta.History.Observations != 0 {
		t.Errorf("beta = %+v", beta)
	}
	for _, c := range beta.Controls {
		if c.Status != store.Unknown || c.Evidence != nil || c.Since == nil || !c.Since.Equal(enrolled.Add(time.Hour)) {
			t.Errorf("beta %s = %s, evidence %v, since %v; want unknown without evidence since enrollment", c.ID, c.Status, c.Evidence, c.Since)
		}
	}
	// alpha: 5 pass, 2 fail (one is TPM 2.0 present but enrolled without
	// it), 2 unknown (no anti-malware or screen lock evidence); beta: 9
	// unknown.
	if f.Summary[store.Pass] != 5 || f.Summary[store.Fail] != 2 || f.Summary[store.Unknown] != 11 || len(f.Summary) != 3 {
		t.Errorf("summary = %v", f.Summary)
	}
}

func TestWriteText(t *testing.T) {
	p := controls.Default()
	st := fleet(t, p)
	out := text(t, build(t, st, p, report.Options{Now: now}))

	for _, c := range p.Controls {
		if !strings.Contains(out, "  "+c.ID+" ") {
			t.Errorf("output lacks control %s", c.ID)
		}
		if !strings.Contains(out, strings.Join(c.Criteria, ",")) {
			t.Errorf("output lacks the SOC 2 criteria of %s: %v", c.ID, c.Criteria)
		}
	}
	for _, s := range []string{
		"Evident device posture report, 2026-03-01T12:00:00Z\n",
		"Policy: " + p.Name + "\n",
		"Device alpha (" + alphaID + ", linux Debian GNU/Linux 12): NOT COMPLIANT\n",
		"  enrolled 2026-03-01T09:00:00Z, last report 2026-03-01T11:30:00Z, statuses as evaluated 2026-03-01T11:30:00Z\n",
		"  evidence history: 6 observations (seq 1-6) collected 2026-03-01T10:55:00Z to 2026-03-01T11:29:00Z; 16 control status intervals\n",
		"Device beta (" + betaID + ", linux): NOT COMPLIANT\n",
		"  enrolled 2026-03-01T10:00:00Z, last report never, statuses as evaluated 2026-03-01T10:00:00Z\n",
		"  evidence history: 0 observations (seq 0-0) collected - to -; 9 control status intervals\n",
		"PASS", "FAIL", "UNKNOWN",
		"2026-03-01 11:00 (2 checks)",
		"automatic updates not enabled (unattended-upgrades): APT::Periodic::Unattended-Upgrade is 0",
		"  DC-ENC-01  diskencryption seq 6 at 2026-03-01T11:29:00Z\n",
		"  DC-FW-01  firewall seq 3 at 2026-03-01T10:55:00Z\n",
		"      command /usr/sbin/nft -j list ruleset (exit 0)\n",
		"      command /usr/sbin/ufw status (exit 1): ufw is not running\n",
		"      file /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c\n",
		"Summary over 2 device(s): fail 2, pass 5, unknown 11\n",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[0], "DC-") || !strings.HasPrefix(f[2], "CC") {
			continue // not a table row
		}
		rows++
		switch f[1] {
		case "PASS", "FAIL", "UNKNOWN", "NOT_APPLICABLE":
		default:
			t.Errorf("table row %q: status %q is not an upper-case status", line, f[1])
		}
	}
	if rows != 2*len(p.Controls) {
		t.Errorf("found %d table rows, want %d", rows, 2*len(p.Controls))
	}
	golden.Check(t, "fleet.txt", []byte(out))
}

func TestWriteJSON(t *testing.T) {
	p := controls.Default()
	st := fleet(t, p)
	f := build(t, st, p, report.Options{Now: now})
	var b bytes.Buffer
	if err := report.WriteJSON(&b, f); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "fleet.json", b.Bytes())

	var back report.Fleet
	dec := json.NewDecoder(bytes.NewReader(b.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("decode report JSON: %v", err)
	}
	if len(back.Devices) != 2 || back.Devices[0].ID != alphaID || len(back.Devices[0].Controls) != 9 ||
		back.Devices[0].Controls[3].Evidence == nil || len(back.Devices[0].Controls[3].Evidence.Sources) != 2 {
		t.Fatalf("decoded report = %+v", back)
	}
	var again bytes.Buffer
	if err := report.WriteJSON(&again, &back); err != nil {
		t.Fatal(err)
	}
	// Facts decode into maps, so compare the documents, not the bytes.
	var docA, docB any
	if err := json.Unmarshal(b.Bytes(), &docA); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(again.Bytes(), &docB); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(docA, docB) {
		t.Errorf("JSON does not round-trip:\n%s\nvs\n%s", b.Bytes(), again.Bytes())
	}
	// Text rendered from the decoded report is the same as from the original.
	if text(t, &back) != text(t, f) {
		t.Errorf("text of the decoded report differs")
	}
}

func TestDeviceFilter(t *testing.T) {
	p := controls.Default()
	st := fleet(t, p)
	tests := []struct {
		name    string
		device  string
		wantID  string
		wantErr string
	}{
		{name: "by id", device: alphaID, wantID: alphaID},
		{name: "by hostname", device: "beta", wantID: betaID},
		{name: "unknown", device: "gamma", wantErr: `no device with id or hostname "gamma"`},
		{name: "id prefix is not a match", device: alphaID[:10], wantErr: "no device"},
		{name: "hostname is case-sensitive", device: "ALPHA", wantErr: "no device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := report.Build(context.Background(), st, p, report.Options{Device: tt.device, Now: now})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Build = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Devices) != 1 || f.Devices[0].ID != tt.wantID {
				t.Fatalf("devices = %+v, want only %s", f.Devices, tt.wantID)
			}
			total := 0
			for _, n := range f.Summary {
				total += n
			}
			if total != len(p.Controls) {
				t.Errorf("summary %v counts %d controls, want the %d of one device", f.Summary, total, len(p.Controls))
			}
			if out := text(t, f); !strings.Contains(out, "Summary over 1 device(s)") {
				t.Errorf("text report:\n%s", out)
			}
		})
	}
}

func TestEmptyFleet(t *testing.T) {
	p := controls.Default()
	st := openStore(t)
	f := build(t, st, p, report.Options{Now: now})
	if len(f.Devices) != 0 {
		t.Fatalf("devices = %+v", f.Devices)
	}
	var js bytes.Buffer
	if err := report.WriteJSON(&js, f); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"devices": []`) {
		t.Errorf("empty fleet JSON must list no devices as [], not null:\n%s", js.String())
	}
	out := text(t, f)
	if !strings.Contains(out, "No devices enrolled yet") || !strings.Contains(out, "evident-server secret create") {
		t.Errorf("empty fleet output lacks the hint:\n%s", out)
	}
	if strings.Contains(out, "Summary") {
		t.Errorf("empty fleet output has a summary:\n%s", out)
	}
	if _, err := report.Build(context.Background(), st, p, report.Options{Device: "alpha", Now: now}); err == nil {
		t.Errorf("Build with a device filter on an empty fleet succeeded")
	}
}

// TestStaleReport: a report after the rescore long after the last evidence
// shows everything unknown, and does not claim the earlier interval's start
// for a status that no longer holds.
func TestStaleReport(t *testing.T) {
	p := controls.Default()
	st := fleet(t, p)
	score(t, st, p, alphaID, now.Add(72*time.Hour)) // the periodic rescore
	f := build(t, st, p, report.Options{Device: "alpha", Now: now.Add(72 * time.Hour)})
	for _, c := range f.Devices[0].Controls {
		if c.Status != store.Unknown && c.Status != store.Fail {
			t.Errorf("%s = %s three days after the last report", c.ID, c.Status)
		}
		// DC-MAL-01 and DC-LOCK-01 never had evidence in this fleet.
		noEvidence := c.ID == "DC-MAL-01" || c.ID == "DC-LOCK-01"
		if c.ID != "DC-AGENT-01" && !noEvidence && !strings.Contains(c.Reason, "no fresh evidence") {
			t.Errorf("%s reason %q, want no fresh evidence", c.ID, c.Reason)
		}
		// DC-MAL-01 and DC-LOCK-01 were unknown (no evidence) from
		// enrollment, so their intervals still hold; every other status
		// changed at the rescore.
		want := now.Add(72 * time.Hour)
		if noEvidence {
			want = enrolled
		}
		if c.Since == nil || !c.Since.Equal(want) {
			t.Errorf("%s since %v, want %s", c.ID, c.Since, want)
		}
	}
	agent := f.Devices[0].Controls[len(f.Devices[0].Controls)-1]
	if agent.ID != "DC-AGENT-01" || agent.Status != store.Fail || !strings.Contains(agent.Reason, "no report for") {
		t.Errorf("DC-AGENT-01 = %s (%s), want fail", agent.Status, agent.Reason)
	}
}

func TestCompliantDevice(t *testing.T) {
	p, err := controls.Parse([]byte(`{"version": 1, "name": "lenient", "controls": [
		{"id": "ENC", "title": "Disk encryption", "criteria": ["CC6.1"], "check": "disk_encryption"},
		{"id": "TPM", "title": "TPM", "criteria": ["CC6.1"], "check": "tpm", "params": {"require_attestation": false}},
		{"id": "AGENT", "title": "Fresh", "criteria": ["CC7.2"], "check": "agent_fresh", "max_age": "24h"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	st := fleet(t, p)
	f := build(t, st, p, report.Options{Device: alphaID, Now: now})
	if !f.Devices[0].Compliant {
		t.Errorf("alpha not compliant: %+v", f.Devices[0].Controls)
	}
	if out := text(t, f); !strings.Contains(out, "): COMPLIANT\n") {
		t.Errorf("text lacks COMPLIANT verdict:\n%s", out)
	}
}

// TestWaiversShown: a waiver in force is shown on the control it covers
// (with its id, approver, expiry and reason) without changing the status;
// a device whose every exception is waived says so; expired and revoked
// waivers are not shown.
func TestWaiversShown(t *testing.T) {
	p := controls.Default()
	st := fleet(t, p)
	ctx := context.Background()
	now := second
	for _, w := range []store.Waiver{
		{ID: "wvr_patch", DeviceID: alphaID, ControlID: "DC-PATCH-02", Reason: "unattended-upgrades breaks the kiosk app", Approver: "CISO",
			CreatedAt: enrolled, StartsAt: enrolled, ExpiresAt: now.Add(30 * 24 * time.Hour)},
		{ID: "wvr_old", DeviceID: alphaID, ControlID: "DC-TPM-01", Reason: "expired", Approver: "CISO",
			CreatedAt: enrolled, StartsAt: enrolled, ExpiresAt: now.Add(-time.Minute)},
	} {
		if err := st.CreateWaiver(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	f := build(t, st, p, report.Options{Device: "alpha", Now: now})
	d := f.Devices[0]
	got := map[string]*report.Waiver{}
	for _, c := range d.Controls {
		got[c.ID] = c.Waiver
		if c.ID == "DC-PATCH-02" && c.Status != store.Fail {
			t.Errorf("a waiver changed the status of DC-PATCH-02 to %s", c.Status)
		}
	}
	if w := got["DC-PATCH-02"]; w == nil || w.ID != "wvr_patch" || w.Approver != "CISO" {
		t.Errorf("DC-PATCH-02 waiver = %+v, want wvr_patch by CISO", w)
	}
	if w := got["DC-TPM-01"]; w != nil {
		t.Errorf("an expired waiver is shown: %+v", w)
	}
	if d.Compliant || d.CompliantOrWaived {
		t.Errorf("compliant %v, compliant or waived %v; want false, false (DC-TPM-01 fails unwaived)", d.Compliant, d.CompliantOrWaived)
	}
	if out := text(t, f); !strings.Contains(out, "[waived (wvr_patch) until "+now.Add(30*24*time.Hour).Format("2006-01-02")+", approved by CISO: unattended-upgrades breaks the kiosk app]") {
		t.Errorf("text report does not show the waiver:\n%s", out)
	}

	// Waive every control: the device is then compliant or waived.
	if err := st.CreateWaiver(ctx, store.Waiver{ID: "wvr_all", DeviceID: alphaID, Reason: "device being decommissioned", Approver: "IT",
		CreatedAt: enrolled, StartsAt: enrolled, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f = build(t, st, p, report.Options{Device: "alpha", Now: now})
	if d := f.Devices[0]; d.Compliant || !d.CompliantOrWaived || !strings.Contains(text(t, f), "NOT COMPLIANT (every exception is waived)") {
		t.Errorf("with every exception waived: compliant %v, compliant or waived %v", d.Compliant, d.CompliantOrWaived)
	}
	if err := st.RevokeWaiver(ctx, "wvr_all", now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := build(t, st, p, report.Options{Device: "alpha", Now: now}).Devices[0]; d.CompliantOrWaived {
		t.Error("a revoked waiver still applies")
	}
}
