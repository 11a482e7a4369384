package controls_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

var (
	now       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	collected = now.Add(-time.Hour)
)

const day = 24 * time.Hour

// only returns the default policy restricted to one control.
func only(t *testing.T, id string) *controls.Policy {
	t.Helper()
	p := controls.Default()
	for _, c := range p.Controls {
		if c.ID == id {
			p.Controls = []controls.Control{c}
			return p
		}
	}
	t.Fatalf("default policy has no control %s", id)
	return nil
}

// okObs is an "ok" observation of collector carrying payload as JSON.
func okObs(t *testing.T, collector string, seq uint64, at time.Time, payload any) store.Observation {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return store.Observation{Seq: seq, Collector: collector, CollectedAt: at, ReceivedAt: at, Status: "ok", Payload: b}
}

// withParser sets the parser version the observation claims.
func withParser(o store.Observation, v int) store.Observation {
	o.ParserVersion = v
	return o
}

func latest(obs ...store.Observation) map[string]store.Observation {
	m := map[string]store.Observation{}
	for _, o := range obs {
		m[o.Collector] = o
	}
	return m
}

type evalCase struct {
	name       string
	in         controls.Input // Now defaults to now
	wantStatus string
	wantReason string // substring
	wantSeq    uint64 // evidence seq expected on the result (0: none)
}

func runEval(t *testing.T, p *controls.Policy, tests []evalCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if in.Now.IsZero() {
				in.Now = now
			}
			evals := p.Evaluate(in)
			if len(evals) != 1 {
				t.Fatalf("Evaluate returned %d evaluations, want 1", len(evals))
			}
			e := evals[0]
			if e.Status != tt.wantStatus || !strings.Contains(e.Reason, tt.wantReason) {
				t.Errorf("%s = %s (%q), want %s with reason containing %q", e.Control.ID, e.Status, e.Reason, tt.wantStatus, tt.wantReason)
			}
			if e.EvidenceSeq != tt.wantSeq {
				t.Errorf("evidence seq = %d, want %d", e.EvidenceSeq, tt.wantSeq)
			}
			if tt.wantSeq != 0 && (e.Evidence == nil || e.Evidence.Seq != tt.wantSeq) {
				t.Errorf("evidence = %+v, want seq %d", e.Evidence, tt.wantSeq)
			}
		})
	}
}

func TestDiskEncryption(t *testing.T) {
	root := evidence.DiskVolume{Device: "/dev/nvme0n1p3", Mountpoints: []string{"/"}, Role: "system", Encrypted: true, Method: "LUKS2"}
	home := evidence.DiskVolume{Device: "/dev/sda1", Mountpoints: []string{"/home"}, Role: "data", Encrypted: true, Method: "LUKS1"}
	plainData := evidence.DiskVolume{Device: "/dev/sdb1", Mountpoints: []string{"/srv"}, Role: "data"}
	plainSwap := evidence.DiskVolume{Device: "/dev/sda2", Role: "swap"}
	usb := evidence.DiskVolume{Device: "/dev/sdc1", Mountpoints: []string{"/media/usb"}, Exempt: true, ExemptReason: "removable"}
	disk := func(vs ...evidence.DiskVolume) store.Observation {
		return okObs(t, evidence.DiskEncryption, 7, collected, evidence.DiskEncryptionPayload{Volumes: vs})
	}
	failed := store.Observation{Seq: 8, Collector: evidence.DiskEncryption, CollectedAt: collected, Status: "error", Error: "lsblk: exit status 1"}
	unsupported := store.Observation{Seq: 9, Collector: evidence.DiskEncryption, CollectedAt: collected, Status: "unsupported", Error: "not implemented on plan9"}
	garbled := store.Observation{Seq: 10, Collector: evidence.DiskEncryption, CollectedAt: collected, Status: "ok", ParserVersion: 2, Payload: json.RawMessage(`{"volumes": "many"}`)}

	runEval(t, only(t, "DC-ENC-01"), []evalCase{
		{name: "all encrypted", in: controls.Input{Latest: latest(disk(root, home, usb))}, wantStatus: store.Pass, wantReason: "all 2 fixed volumes encrypted: / on /dev/nvme0n1p3 (LUKS2)", wantSeq: 7},
		{name: "one plain", in: controls.Input{Latest: latest(disk(root, plainData))}, wantStatus: store.Fail, wantReason: "1 of 2 fixed volumes not encrypted: /srv on /dev/sdb1", wantSeq: 7},
		{name: "plain swap", in: controls.Input{Latest: latest(disk(root, plainSwap))}, wantStatus: store.Fail, wantReason: "swap on /dev/sda2", wantSeq: 7},
		{name: "exempt only", in: controls.Input{Latest: latest(disk(usb))}, wantStatus: store.Unknown, wantReason: "no fixed volume found", wantSeq: 7},
		{name: "no volumes", in: controls.Input{Latest: latest(disk())}, wantStatus: store.Unknown, wantReason: "no fixed volume found", wantSeq: 7},
		{name: "no observation", in: controls.Input{Latest: latest()}, wantStatus: store.Unknown, wantReason: "no diskencryption evidence received yet"},
		{name: "nil latest", in: controls.Input{}, wantStatus: store.Unknown, wantReason: "no diskencryption evidence received yet"},
		{name: "other collectors only", in: controls.Input{Latest: latest(okObs(t, evidence.Firewall, 3, collected, evidence.FirewallPayload{}))}, wantStatus: store.Unknown, wantReason: "no diskencryption evidence"},
		{name: "collection error", in: controls.Input{Latest: latest(failed)}, wantStatus: store.Unknown, wantReason: "diskencryption collection failed: lsblk: exit status 1", wantSeq: 8},
		{name: "unsupported", in: controls.Input{Latest: latest(unsupported)}, wantStatus: store.Unknown, wantReason: "not supported on this OS yet: not implemented on plan9", wantSeq: 9},
		{name: "undecodable payload", in: controls.Input{Latest: latest(garbled)}, wantStatus: store.Unknown, wantReason: "payload (parser v2) not understood", wantSeq: 10},
	})
}

// history serves a fixed run of patches observations, newest first, and
// records the limit it was asked for.
func history(obs ...store.Observation) func(string, int) ([]store.Observation, error) {
	return func(collector string, limit int) ([]store.Observation, error) {
		if collector != evidence.Patches {
			return nil, errors.New("unexpected collector " + collector)
		}
		if len(obs) > limit {
			obs = obs[:limit]
		}
		return obs, nil
	}
}

func TestSecurityPatches(t *testing.T) {
	osRel := evidence.OSRelease{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"}
	eolPast := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	eolFuture := time.Date(2028, 6, 30, 0, 0, 0, 0, time.UTC)
	pl := func(pending int, mod ...func(*evidence.PatchesPayload)) evidence.PatchesPayload {
		p := evidence.PatchesPayload{Manager: "apt", OS: osRel, PendingUpdates: pending + 2, PendingSecurityUpdates: pending}
		for i := range pending {
			p.PendingSecurity = append(p.PendingSecurity, evidence.Package{Name: "pkg" + string(rune('a'+i))})
		}
		for _, m := range mod {
			m(&p)
		}
		return p
	}
	at := func(seq uint64, when time.Time, p evidence.PatchesPayload) store.Observation {
		return okObs(t, evidence.Patches, seq, when, withIndex(p, when))
	}
	newest := at(50, collected, pl(3))

	runEval(t, only(t, "DC-PATCH-01"), []evalCase{
		{name: "nothing pending", in: controls.Input{Latest: latest(at(50, collected, pl(0)))}, wantStatus: store.Pass, wantReason: "no pending security updates (apt, Debian GNU/Linux 12 (bookworm))", wantSeq: 50},
		{name: "os name from id and version", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) { p.OS.PrettyName = "" })))}, wantStatus: store.Pass, wantReason: "(apt, debian 12)", wantSeq: 50},
		{name: "end of life passed", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) { p.OS.EndOfLife = &eolPast })))}, wantStatus: store.Fail, wantReason: "reached end of security support on 2026-02-01", wantSeq: 50},
		{name: "end of life today", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) { e := collected; p.OS.EndOfLife = &e })))}, wantStatus: store.Fail, wantReason: "reached end of security support", wantSeq: 50},
		{name: "end of life ahead", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) { p.OS.EndOfLife = &eolFuture })))}, wantStatus: store.Pass, wantReason: "no pending security updates", wantSeq: 50},
		{name: "end of life passed beats no manager", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) { p.Manager = ""; p.OS.EndOfLife = &eolPast })))}, wantStatus: store.Fail, wantReason: "end of security support", wantSeq: 50},
		{name: "no manager", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) { p.Manager = "" })))}, wantStatus: store.Unknown, wantReason: "no supported package manager found", wantSeq: 50},
		{name: "windows: no update date", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) {
			p.Manager, p.OS = "", evidence.OSRelease{ID: "windows", VersionID: "11 25H2", PrettyName: "Microsoft Windows 11 Pro", EndOfLife: &eolFuture}
		})))}, wantStatus: store.Unknown, wantReason: "no installed update date was found", wantSeq: 50},
		{name: "windows: updated 20 days ago", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) {
			p.Manager, p.OS = "", evidence.OSRelease{ID: "windows", VersionID: "11 25H2", PrettyName: "Microsoft Windows 11 Pro", EndOfLife: &eolFuture}
			last := collected.Add(-20 * day)
			p.LastSuccessfulUpdate = &last
		})))}, wantStatus: store.Pass, wantReason: "newest Windows update installed 20 days ago, within a monthly cycle", wantSeq: 50},
		{name: "windows: updated 60 days ago", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) {
			p.Manager, p.OS = "", evidence.OSRelease{ID: "windows", VersionID: "11 25H2", PrettyName: "Microsoft Windows 11 Pro", EndOfLife: &eolFuture}
			last := collected.Add(-60 * day)
			p.LastSuccessfulUpdate = &last
		})))}, wantStatus: store.Fail, wantReason: "newest Windows update installed 60 days ago", wantSeq: 50},
		// A first report already listing updates says nothing of when apt
		// published them: a host enrolled with months-old updates pending
		// must not pass for its first 14 days.
		{name: "pending in the first report: release date unknown", in: controls.Input{Latest: latest(newest)}, wantStatus: store.Unknown,
			wantReason: "3 security updates pending (pkga, pkgb, pkgc) for less than a day as seen by the server; released on an unknown date: apt does not date its updates, and the first report the server holds (2026-03-01) already listed them", wantSeq: 50},
		{name: "pending since the first report, within the window: still unknown", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-5*day), pl(2)), at(48, now.Add(-10*day), pl(1)))},
			wantStatus: store.Unknown, wantReason: "for 9 days as seen by the server; released on an unknown date", wantSeq: 50},
		{name: "pending within window after a report with none", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-5*day), pl(2)), at(48, now.Add(-10*day), pl(1)), at(47, now.Add(-11*day), pl(0)))},
			wantStatus: store.Pass, wantReason: "for 9 days as seen by the server, within the 14-day window", wantSeq: 50},
		{name: "pending longer than window", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-5*day), pl(2)), at(48, now.Add(-20*day), pl(1)))},
			wantStatus: store.Fail, wantReason: "for 19 days as seen by the server, longer than the 14-day window", wantSeq: 50},
		{name: "zero in between resets the start", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-5*day), pl(2)), at(48, now.Add(-10*day), pl(0)), at(47, now.Add(-20*day), pl(4)))},
			wantStatus: store.Pass, wantReason: "for 4 days as seen by the server, within", wantSeq: 50},
		// A failed collection (apt's lock held by unattended-upgrades, say)
		// does not show the updates were installed.
		{name: "failed collection in between does not end the run", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-5*day), pl(2)),
			store.Observation{Seq: 48, Collector: evidence.Patches, CollectedAt: now.Add(-10 * day), Status: "error"}, at(47, now.Add(-20*day), pl(4)))},
			wantStatus: store.Fail, wantReason: "for 19 days as seen by the server, longer than", wantSeq: 50},
		{name: "none pending by a stale index does not end the run", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-5*day), pl(2)),
			okObs(t, evidence.Patches, 48, now.Add(-10*day), withIndex(pl(0), now.Add(-40*day))), at(47, now.Add(-20*day), pl(4)))},
			wantStatus: store.Fail, wantReason: "for 19 days as seen by the server, longer than", wantSeq: 50},
		{name: "none pending by a stale index bounds nothing", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-5*day), pl(2)),
			okObs(t, evidence.Patches, 48, now.Add(-10*day), withIndex(pl(0), now.Add(-40*day))))},
			wantStatus: store.Unknown, wantReason: "for 9 days as seen by the server; released on an unknown date", wantSeq: 50},
		// The device was off for a month after a report with none
		// pending: what it lists now was released some time in between.
		{name: "a month without reports after none pending", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-2*day), pl(2)), at(48, now.Add(-30*day), pl(0)))},
			wantStatus: store.Unknown, wantReason: "for 1 day as seen by the server; released after the report of 2026-01-30 that showed none pending, but the server has no report between it and 2026-02-27, so whether they are older than the 14-day window is unknown", wantSeq: 50},
		// The apt timer broke: weeks of "none pending" from a stale index,
		// then a refresh lists updates released meanwhile.
		{name: "weeks of a stale index before the updates appear", in: controls.Input{Latest: latest(newest), History: history(newest,
			okObs(t, evidence.Patches, 49, now.Add(-5*day), withIndex(pl(0), now.Add(-25*day))), okObs(t, evidence.Patches, 48, now.Add(-19*day), withIndex(pl(0), now.Add(-30*day))),
			at(47, now.Add(-25*day), pl(0)))},
			wantStatus: store.Fail, wantReason: "for 18 days as seen by the server, longer than the 14-day window", wantSeq: 50},
		{name: "a report without a manager does not end the run", in: controls.Input{Latest: latest(newest), History: history(newest, at(49, now.Add(-5*day), pl(2)),
			at(48, now.Add(-10*day), pl(0, func(p *evidence.PatchesPayload) { p.Manager = "" })), at(47, now.Add(-20*day), pl(4)))},
			wantStatus: store.Fail, wantReason: "for 19 days", wantSeq: 50},
		{name: "history error: release date unknown", in: controls.Input{Latest: latest(newest), History: func(string, int) ([]store.Observation, error) { return nil, errors.New("db down") }},
			wantStatus: store.Unknown, wantReason: "less than a day as seen by the server; released on an unknown date", wantSeq: 50},
		{name: "many pending names are cut at five", in: controls.Input{Latest: latest(at(50, collected, pl(7)))}, wantStatus: store.Unknown, wantReason: "7 security updates pending (pkga, pkgb, pkgc, pkgd, pkge and 2 more)", wantSeq: 50},
		{name: "a list capped by the agent says how many it leaves out", in: controls.Input{Latest: latest(at(50, collected, pl(3, func(p *evidence.PatchesPayload) { p.PendingSecurityUpdates = 81 })))},
			wantStatus: store.Unknown, wantReason: "81 security updates pending (pkga, pkgb, pkgc and 78 more)", wantSeq: 50},
		{name: "a count without a list", in: controls.Input{Latest: latest(at(50, collected, pl(0, func(p *evidence.PatchesPayload) { p.PendingSecurityUpdates = 2 })))},
			wantStatus: store.Unknown, wantReason: "2 security updates pending (not listed by the agent)", wantSeq: 50},
		// dnf and zypper date their advisories: the first report decides.
		{name: "dated: oldest released 40 days ago fails at once", in: controls.Input{Latest: latest(at(50, collected, pl(3, func(p *evidence.PatchesPayload) { p.Manager = "dnf"; p.OldestPendingSecurityDays = ptr(40) })))},
			wantStatus: store.Fail, wantReason: "3 security updates pending (pkga, pkgb, pkgc), the oldest released 40 days ago (dnf advisory dates), longer than the 14-day window", wantSeq: 50},
		{name: "dated: oldest released 3 days ago passes at once", in: controls.Input{Latest: latest(at(50, collected, pl(3, func(p *evidence.PatchesPayload) { p.Manager = "dnf"; p.OldestPendingSecurityDays = ptr(3) })))},
			wantStatus: store.Pass, wantReason: "the oldest released 3 days ago (dnf advisory dates), within the 14-day window", wantSeq: 50},
		{name: "dated: within the window, but seen pending longer", in: controls.Input{Latest: latest(at(50, collected, pl(3, func(p *evidence.PatchesPayload) { p.Manager = "zypper"; p.OldestPendingSecurityDays = ptr(3) }))),
			History: history(newest, at(49, now.Add(-20*day), pl(1)))},
			wantStatus: store.Fail, wantReason: "for 19 days as seen by the server, longer than the 14-day window", wantSeq: 50},
		{name: "dated: exactly the window", in: controls.Input{Latest: latest(at(50, collected, pl(1, func(p *evidence.PatchesPayload) { p.Manager = "dnf"; p.OldestPendingSecurityDays = ptr(14) })))},
			wantStatus: store.Pass, wantReason: "the oldest released 14 days ago", wantSeq: 50},
		{name: "dated, but a stale index", in: controls.Input{Latest: latest(okObs(t, evidence.Patches, 50, collected, withIndex(pl(1, func(p *evidence.PatchesPayload) { p.Manager = "dnf"; p.OldestPendingSecurityDays = ptr(0) }), now.Add(-30*day))))},
			wantStatus: store.Unknown, wantReason: "the oldest released less than a day ago, within the 14-day window, but package index last refreshed", wantSeq: 50},
		{name: "no observation", in: controls.Input{}, wantStatus: store.Unknown, wantReason: "no patches evidence received yet"},
	})
}

// undated_age_from_first_seen takes the first report as the release date,
// and says so.
func TestSecurityPatchesUndatedFromFirstSeen(t *testing.T) {
	p, err := controls.Parse([]byte(policy(`{"id": "P", "check": "security_patches", "params": {"undated_age_from_first_seen": true}}`)))
	if err != nil {
		t.Fatal(err)
	}
	pl := evidence.PatchesPayload{Manager: "apt", PendingSecurityUpdates: 1, PendingSecurity: []evidence.Package{{Name: "openssl"}}}
	newest := okObs(t, evidence.Patches, 2, collected, withIndex(pl, collected))
	runEval(t, p, []evalCase{
		{name: "first report", in: controls.Input{Latest: latest(newest)}, wantStatus: store.Pass,
			wantReason: "1 security updates pending (openssl), age unknown (apt does not date its updates), counted by policy from the first report listing them (2026-03-01): less than a day as seen by the server, within the 14-day window", wantSeq: 2},
		{name: "first report 20 days back", in: controls.Input{Latest: latest(newest), History: history(newest, okObs(t, evidence.Patches, 1, now.Add(-20*day), withIndex(pl, now.Add(-20*day))))},
			wantStatus: store.Fail, wantReason: "for 19 days as seen by the server, longer than the 14-day window", wantSeq: 2},
	})
	if _, err := controls.Parse([]byte(policy(`{"id": "P", "check": "security_patches", "params": {"undated_age_from_first_seen": "yes"}}`))); err == nil {
		t.Error("a string for undated_age_from_first_seen was accepted")
	}
}

func ptr[T any](v T) *T { return &v }

func TestSecurityPatchesMaxDaysParam(t *testing.T) {
	p, err := controls.Parse([]byte(policy(`{"id": "P", "check": "security_patches", "params": {"max_days": 3}}`)))
	if err != nil {
		t.Fatal(err)
	}
	newest := okObs(t, evidence.Patches, 2, collected, evidence.PatchesPayload{Manager: "dnf", PendingSecurityUpdates: 1})
	older := okObs(t, evidence.Patches, 1, now.Add(-5*day), evidence.PatchesPayload{Manager: "dnf", PendingSecurityUpdates: 1})
	runEval(t, p, []evalCase{
		{name: "5 days > 3", in: controls.Input{Latest: latest(newest), History: history(newest, older)}, wantStatus: store.Fail, wantReason: "longer than the 3-day window", wantSeq: 2},
	})
}

func TestAutoUpdates(t *testing.T) {
	obs := func(a *evidence.AutoUpdates) store.Observation {
		o := okObs(t, evidence.Patches, 11, collected, evidence.PatchesPayload{Manager: "apt", AutoUpdates: a})
		o.ParserVersion = 3
		return o
	}
	runEval(t, only(t, "DC-PATCH-02"), []evalCase{
		{name: "not found", in: controls.Input{Latest: latest(obs(nil))}, wantStatus: store.Unknown, wantReason: "automatic update configuration not found", wantSeq: 11},
		{name: "enabled", in: controls.Input{Latest: latest(obs(&evidence.AutoUpdates{Enabled: true, Mechanism: "unattended-upgrades"}))}, wantStatus: store.Pass, wantReason: "automatic updates enabled (unattended-upgrades)", wantSeq: 11},
		{name: "disabled", in: controls.Input{Latest: latest(obs(&evidence.AutoUpdates{Mechanism: "dnf-automatic", Detail: "timer inactive"}))}, wantStatus: store.Fail, wantReason: "automatic updates not enabled (dnf-automatic): timer inactive", wantSeq: 11},
		{name: "disabled, nothing known", in: controls.Input{Latest: latest(obs(&evidence.AutoUpdates{}))}, wantStatus: store.Fail, wantReason: "automatic updates not enabled", wantSeq: 11},
		{name: "no observation", in: controls.Input{}, wantStatus: store.Unknown, wantReason: "no patches evidence"},
	})
}

func TestFirewall(t *testing.T) {
	nft := evidence.FirewallBackend{Name: "nftables", Active: true, InboundDefaultDeny: true, Detail: "table inet filter chain input: hook input policy drop"}
	obs := func(p evidence.FirewallPayload) store.Observation {
		return okObs(t, evidence.Firewall, 21, collected, p)
	}
	on, off := true, false
	alf := []evidence.FirewallBackend{{Name: "alf", Active: true, InboundDefaultDeny: true, Detail: "global state 1"}}
	runEval(t, only(t, "DC-FW-01"), []evalCase{
		{name: "deny", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny,
			Reason: "IPv4 inbound denied by default; IPv6 inbound denied by default", DecidedBy: "nftables", Backends: []evidence.FirewallBackend{nft}}))},
			wantStatus: store.Pass, wantReason: "IPv4 inbound denied by default; IPv6 inbound denied by default", wantSeq: 21},
		{name: "open names the rule", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Enabled: true, Verdict: evidence.FirewallVerdictOpen,
			Reason: "IPv4 tcp open: table inet f chain input handle 4: accept with no match", Backends: []evidence.FirewallBackend{nft}}))},
			wantStatus: store.Fail, wantReason: "table inet f chain input handle 4: accept with no match", wantSeq: 21},
		{name: "unknown stays unknown", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Verdict: evidence.FirewallVerdictUnknown,
			Reason: "cannot read the loaded ruleset: nft -j list ruleset: exit 1: Operation not permitted"}))},
			wantStatus: store.Unknown, wantReason: "cannot read the loaded ruleset", wantSeq: 21},
		{name: "unknown even if a stale field says deny", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictUnknown, Reason: "x"}))},
			wantStatus: store.Unknown, wantReason: "x", wantSeq: 21},
		{name: "a verdict not understood", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: "mostly"}))},
			wantStatus: store.Unknown, wantReason: `firewall verdict "mostly" not understood`, wantSeq: 21},
		{name: "mac state 1 passes", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny,
			Reason: "Application Firewall on (state 1)", BlockAll: &off, Backends: alf}))},
			wantStatus: store.Pass, wantReason: "Application Firewall on (state 1)", wantSeq: 21},
		// v1 agents: their Linux "deny" cannot be trusted.
		{name: "v1 linux deny is unknown", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, DecidedBy: "nftables", Backends: []evidence.FirewallBackend{nft}}))},
			wantStatus: store.Unknown, wantReason: "upgrade the agent", wantSeq: 21},
		{name: "v1 linux accepts by default", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Enabled: true, DecidedBy: "ufw", Backends: []evidence.FirewallBackend{{Name: "ufw", Active: true}}}))},
			wantStatus: store.Fail, wantReason: "inbound traffic is accepted by default", wantSeq: 21},
		{name: "v1 disabled", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{}))}, wantStatus: store.Fail, wantReason: "no active host firewall found", wantSeq: 21},
		{name: "v1 mac state 1", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{Enabled: true, DecidedBy: "alf", Backends: []evidence.FirewallBackend{{Name: "alf", Active: true, Detail: "global state 1"}}}))},
			wantStatus: store.Pass, wantReason: "Application Firewall on", wantSeq: 21},
		{name: "v1 one Windows profile off", in: controls.Input{Latest: latest(obs(evidence.FirewallPayload{DecidedBy: "windows:Public", Backends: []evidence.FirewallBackend{
			{Name: "windows:Domain", Active: true, InboundDefaultDeny: true}, {Name: "windows:Private", Active: true, InboundDefaultDeny: true}, {Name: "windows:Public"}}}))},
			wantStatus: store.Fail, wantReason: "windows:Public", wantSeq: 21},
		{name: "no observation", in: controls.Input{}, wantStatus: store.Unknown, wantReason: "no firewall evidence"},
	})
	strict, err := controls.Parse([]byte(policy(`{"id": "FW", "check": "firewall", "params": {"require_block_all": true}}`)))
	if err != nil {
		t.Fatal(err)
	}
	on1 := evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny, Reason: "Application Firewall on (state 1)", BlockAll: &off, Backends: alf}
	blockAll := on1
	blockAll.BlockAll, blockAll.Reason = &on, "Application Firewall on (state 2)"
	unknownBlock := on1
	unknownBlock.BlockAll = nil
	linux := evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny, Reason: "IPv4 inbound denied by default", Backends: []evidence.FirewallBackend{nft}}
	runEval(t, strict, []evalCase{
		{name: "block all required, off", in: controls.Input{Latest: latest(obs(on1))}, wantStatus: store.Fail, wantReason: "block all: off", wantSeq: 21},
		{name: "block all required, unknown", in: controls.Input{Latest: latest(obs(unknownBlock))}, wantStatus: store.Fail, wantReason: "block all: unknown", wantSeq: 21},
		{name: "block all required, on", in: controls.Input{Latest: latest(obs(blockAll))}, wantStatus: store.Pass, wantReason: "state 2", wantSeq: 21},
		{name: "block all does not apply to linux", in: controls.Input{Latest: latest(obs(linux))}, wantStatus: store.Pass, wantReason: "IPv4 inbound denied", wantSeq: 21},
	})
	if _, err := controls.Parse([]byte(policy(`{"id": "FW", "check": "firewall", "params": {"require_blockall": true}}`))); err == nil {
		t.Error("a misspelt firewall param must be refused")
	}
}

func TestSecureBoot(t *testing.T) {
	yes, no := true, false
	obs := func(p evidence.SecureBootPayload) store.Observation {
		return okObs(t, evidence.SecureBoot, 31, collected, p)
	}
	runEval(t, only(t, "DC-BOOT-01"), []evalCase{
		{name: "no UEFI", in: controls.Input{Latest: latest(obs(evidence.SecureBootPayload{}))}, wantStatus: store.NotApplicable, wantReason: "booted without UEFI firmware", wantSeq: 31},
		{name: "enabled", in: controls.Input{Latest: latest(obs(evidence.SecureBootPayload{UEFI: true, Enabled: &yes, SetupMode: &no, ShimValidation: &yes}))}, wantStatus: store.Pass, wantReason: "Secure Boot enabled and enforcing", wantSeq: 31},
		{name: "enabled, setup mode unknown", in: controls.Input{Latest: latest(obs(evidence.SecureBootPayload{UEFI: true, Enabled: &yes}))}, wantStatus: store.Pass, wantReason: "enforcing", wantSeq: 31},
		{name: "disabled", in: controls.Input{Latest: latest(obs(evidence.SecureBootPayload{UEFI: true, Enabled: &no}))}, wantStatus: store.Fail, wantReason: "Secure Boot is disabled", wantSeq: 31},
		{name: "setup mode", in: controls.Input{Latest: latest(obs(evidence.SecureBootPayload{UEFI: true, Enabled: &yes, SetupMode: &yes}))}, wantStatus: store.Fail, wantReason: "setup mode: keys are not enforced", wantSeq: 31},
		{name: "unreadable", in: controls.Input{Latest: latest(obs(evidence.SecureBootPayload{UEFI: true}))}, wantStatus: store.Unknown, wantReason: "SecureBoot variable could not be read", wantSeq: 31},
		{name: "no observation", in: controls.Input{}, wantStatus: store.Unknown, wantReason: "no secureboot evidence"},
	})
}

// attested is TPM evidence with one attestation verdict received at.
func attested(at time.Time, v attest.Verdict) *controls.TPMEvidence {
	return &controls.TPMEvidence{Enrolled: true, EKTrust: "manufacturer-certificate", EKCertIssuer: "CN=swtpm-localca",
		EnrolledAt: now.Add(-10 * day), Attestation: &controls.AttestationEvidence{ID: 3, At: at, FirstSeq: 90, LastSeq: 97, Verdict: v}}
}

var (
	goodQuote = attest.Verdict{Verified: true, Banks: []string{"sha256"}, EventLog: "replayed", SecureBoot: &attest.SecureBoot{Enabled: true}}
	noLog     = attest.Verdict{Verified: true, Banks: []string{"sha256"}, EventLog: "missing: no such file"}
	sbOff     = attest.Verdict{Verified: true, Banks: []string{"sha256"}, EventLog: "replayed", SecureBoot: &attest.SecureBoot{}}
	badQuote  = attest.Verdict{Reasons: []string{"nonce expired before the attestation arrived"}, SecureBoot: &attest.SecureBoot{Enabled: true}}
)

func TestTPM(t *testing.T) {
	obs := func(p evidence.TPMPayload) store.Observation { return okObs(t, evidence.TPM, 41, collected, p) }
	tpm20 := evidence.TPMPayload{Present: true, Version: "2.0", Devices: []evidence.TPMDevice{{Name: "tpm0", Version: "2.0"}}}
	mac := evidence.TPMPayload{NotApplicable: "Macs have no TPM"}
	notEnrolled := &controls.TPMEvidence{GOOS: "linux"}
	macNotEnrolled := &controls.TPMEvidence{GOOS: "darwin"}
	enrolled := &controls.TPMEvidence{Enrolled: true, EKTrust: "allowlist", EnrolledAt: now.Add(-time.Hour)}
	cases := []evalCase{
		{name: "absent", in: controls.Input{Latest: latest(obs(evidence.TPMPayload{}))}, wantStatus: store.Fail, wantReason: "no TPM: this device has no TPM", wantSeq: 41},
		{name: "absent, enrolled without TPM", in: controls.Input{Latest: latest(obs(evidence.TPMPayload{})), TPM: notEnrolled}, wantStatus: store.Fail, wantReason: "no TPM", wantSeq: 41},
		{name: "macOS", in: controls.Input{Latest: latest(obs(mac)), TPM: macNotEnrolled}, wantStatus: store.NotApplicable, wantReason: "not applicable: Macs have no TPM", wantSeq: 41},
		{name: "a PC claiming a Mac's not applicable", in: controls.Input{Latest: latest(obs(mac)), TPM: notEnrolled}, wantStatus: store.Fail,
			wantReason: "no TPM: this linux device reports that it cannot have one", wantSeq: 41},
		{name: "1.2", in: controls.Input{Latest: latest(obs(evidence.TPMPayload{Present: true, Version: "1.2"}))}, wantStatus: store.Fail, wantReason: "TPM 1.2 found; TPM 2.0 is required", wantSeq: 41},
		{name: "no observation", in: controls.Input{}, wantStatus: store.Unknown, wantReason: "no tpm evidence"},
	}
	withAttestation := []evalCase{
		{name: "2.0, no TPM information", in: controls.Input{Latest: latest(obs(tpm20))}, wantStatus: store.Unknown, wantReason: "no attestation information", wantSeq: 41},
		{name: "2.0, enrolled without it", in: controls.Input{Latest: latest(obs(tpm20)), TPM: notEnrolled}, wantStatus: store.Fail, wantReason: "enrolled without it", wantSeq: 41},
		{name: "enrolled, not attested yet", in: controls.Input{TPM: enrolled}, wantStatus: store.Unknown, wantReason: "TPM bound at enrollment (EK: allowlist); no attestation received yet"},
		{name: "verified quote", in: controls.Input{Latest: latest(obs(evidence.TPMPayload{})), TPM: attested(now.Add(-time.Hour), goodQuote)}, wantStatus: store.Pass,
			wantReason: "TPM 2.0 quote verified with the AK bound at enrollment (EK: manufacturer-certificate issued by CN=swtpm-localca); PCRs sha256 0-7; event log replayed", wantSeq: 97},
		{name: "verified quote, no event log", in: controls.Input{TPM: attested(now.Add(-time.Hour), noLog)}, wantStatus: store.Pass, wantReason: "event log missing: no such file", wantSeq: 97},
		{name: "failed quote", in: controls.Input{Latest: latest(obs(tpm20)), TPM: attested(now.Add(-time.Hour), badQuote)}, wantStatus: store.Fail,
			wantReason: "TPM attestation failed: nonce expired before the attestation arrived", wantSeq: 97},
		{name: "stale verified quote", in: controls.Input{TPM: attested(now.Add(-49*time.Hour), goodQuote)}, wantStatus: store.Unknown,
			wantReason: "no fresh evidence: newest is 49h0m0s old (window 48h0m0s)", wantSeq: 97},
	}
	runEval(t, only(t, "DC-TPM-01"), append(cases, withAttestation...)) // the default requires attestation

	noAttest, err := controls.Parse([]byte(policy(`{"id": "T", "check": "tpm", "params": {"require_attestation": false}}`)))
	if err != nil {
		t.Fatal(err)
	}
	runEval(t, noAttest, append(cases,
		evalCase{name: "2.0, attestation not required", in: controls.Input{Latest: latest(obs(tpm20))}, wantStatus: store.Pass, wantReason: "TPM 2.0 present", wantSeq: 41},
		evalCase{name: "2.0, enrolled without it, attestation not required", in: controls.Input{Latest: latest(obs(tpm20)), TPM: notEnrolled}, wantStatus: store.Pass, wantReason: "TPM 2.0 present", wantSeq: 41},
	))
}

// TestSecureBootAttested: a verified quote whose event log replayed decides
// Secure Boot over what the OS says; anything less falls back to the OS,
// marked as not attested.
func TestSecureBootAttested(t *testing.T) {
	yes := true
	osSaysOn := latest(okObs(t, evidence.SecureBoot, 31, collected, evidence.SecureBootPayload{UEFI: true, Enabled: &yes}))
	runEval(t, only(t, "DC-BOOT-01"), []evalCase{
		{name: "event log says on", in: controls.Input{Latest: osSaysOn, TPM: attested(now.Add(-time.Hour), goodQuote)}, wantStatus: store.Pass,
			wantReason: "Secure Boot enabled (from the TPM event log, replayed against a verified quote)", wantSeq: 97},
		{name: "event log says off, OS says on", in: controls.Input{Latest: osSaysOn, TPM: attested(now.Add(-time.Hour), sbOff)}, wantStatus: store.Fail,
			wantReason: "Secure Boot is disabled (from the TPM event log", wantSeq: 97},
		{name: "failed quote: OS, not attested", in: controls.Input{Latest: osSaysOn, TPM: attested(now.Add(-time.Hour), badQuote)}, wantStatus: store.Pass,
			wantReason: "Secure Boot enabled and enforcing (reported by the OS; not attested)", wantSeq: 31},
		{name: "no event log: OS, not attested", in: controls.Input{Latest: osSaysOn, TPM: attested(now.Add(-time.Hour), noLog)}, wantStatus: store.Pass,
			wantReason: "(reported by the OS; not attested)", wantSeq: 31},
		{name: "stale attested state is unknown", in: controls.Input{Latest: osSaysOn, TPM: attested(now.Add(-72*time.Hour), goodQuote)}, wantStatus: store.Unknown,
			wantReason: "no fresh evidence", wantSeq: 97},
	})
}

func TestAgentFresh(t *testing.T) {
	at := func(d time.Duration) *time.Time { v := now.Add(-d); return &v }
	// seen is a device whose newest accepted evidence was received d ago.
	seen := func(d time.Duration) controls.Input {
		o := okObs(t, evidence.TPM, 7, now.Add(-d), evidence.TPMPayload{})
		return controls.Input{LastSeen: at(d), Latest: latest(o)}
	}
	runEval(t, only(t, "DC-AGENT-01"), []evalCase{
		{name: "never reported", in: controls.Input{}, wantStatus: store.Unknown, wantReason: "the agent has never reported"},
		{name: "just now", in: seen(0), wantStatus: store.Pass, wantReason: "last report received 2026-03-01T12:00:00Z"},
		{name: "within 24h", in: seen(23 * time.Hour), wantStatus: store.Pass, wantReason: "last report received 2026-02-28T13:00:00Z"},
		{name: "exactly 24h", in: seen(24 * time.Hour), wantStatus: store.Pass, wantReason: "last report received"},
		{name: "older than 24h", in: seen(25 * time.Hour), wantStatus: store.Fail, wantReason: "no report for 25h0m0s (window 24h0m0s); last report 2026-02-28T11:00:00Z"},
		{name: "days old", in: seen(3*day + 90*time.Second), wantStatus: store.Fail, wantReason: "no report for 72h2m0s"},
	})
}

// TestAgentFreshFalsePass: constructs that passed DC-AGENT-01 while no
// fresh evidence arrived.
func TestAgentFreshFalsePass(t *testing.T) {
	at := func(d time.Duration) *time.Time { v := now.Add(-d); return &v }
	old := okObs(t, evidence.TPM, 7, now.Add(-3*day), evidence.TPMPayload{})
	// A clock set ahead: the device claims its evidence is from tomorrow.
	future := old
	future.CollectedAt = now.Add(day)
	rejected := store.Observation{Seq: 9, Collector: "server.rejected", CollectedAt: now, ReceivedAt: now, Status: "error"}
	runEval(t, only(t, "DC-AGENT-01"), []evalCase{
		// LastSeen moves on any connection, also when only already stored
		// (replayed) or rejected observations arrive.
		{name: "replayed batch moves LastSeen only", in: controls.Input{LastSeen: at(0), Latest: latest(old)}, wantStatus: store.Fail, wantReason: "no report for 72h0m0s"},
		{name: "only rejected evidence", in: controls.Input{LastSeen: at(0), Latest: latest(rejected)}, wantStatus: store.Unknown, wantReason: "accepted no evidence"},
		{name: "rejected does not refresh", in: controls.Input{LastSeen: at(0), Latest: latest(old, rejected)}, wantStatus: store.Fail, wantReason: "no report for 72h0m0s"},
		{name: "device clock ahead", in: controls.Input{LastSeen: at(3 * day), Latest: latest(future)}, wantStatus: store.Fail, wantReason: "no report for 72h0m0s"},
		// Evaluated as of a past time (a period report): a later report
		// must not make that time look covered.
		{name: "report after the evaluation time", in: controls.Input{Now: now.Add(-5 * day), LastSeen: at(0), Latest: latest(okObs(t, evidence.TPM, 7, now, evidence.TPMPayload{}))},
			wantStatus: store.Unknown, wantReason: "received after the evaluation time"},
	})
}

// TestStaleness: whatever a check decided, evidence older than the control's
// max_age is not counted.
func TestStaleness(t *testing.T) {
	enc := evidence.DiskEncryptionPayload{Volumes: []evidence.DiskVolume{{Device: "/dev/sda1", Mountpoints: []string{"/"}, Encrypted: true, Method: "LUKS2"}}}
	plain := evidence.DiskEncryptionPayload{Volumes: []evidence.DiskVolume{{Device: "/dev/sda1", Mountpoints: []string{"/"}}}}
	runEval(t, only(t, "DC-ENC-01"), []evalCase{
		{name: "47h old pass holds", in: controls.Input{Latest: latest(okObs(t, evidence.DiskEncryption, 5, now.Add(-47*time.Hour), enc))}, wantStatus: store.Pass, wantReason: "all 1 fixed volumes encrypted", wantSeq: 5},
		{name: "exactly 48h holds", in: controls.Input{Latest: latest(okObs(t, evidence.DiskEncryption, 5, now.Add(-48*time.Hour), enc))}, wantStatus: store.Pass, wantReason: "encrypted", wantSeq: 5},
		{name: "49h old pass is unknown", in: controls.Input{Latest: latest(okObs(t, evidence.DiskEncryption, 5, now.Add(-49*time.Hour), enc))}, wantStatus: store.Unknown,
			wantReason: "no fresh evidence: newest is 49h0m0s old (window 48h0m0s); it said: all 1 fixed volumes encrypted", wantSeq: 5},
		{name: "stale fail is unknown too", in: controls.Input{Latest: latest(okObs(t, evidence.DiskEncryption, 5, now.Add(-10*day), plain))}, wantStatus: store.Unknown, wantReason: "no fresh evidence", wantSeq: 5},
		{name: "stale error is unknown with the same words", in: controls.Input{Latest: latest(store.Observation{Seq: 5, Collector: evidence.DiskEncryption, CollectedAt: now.Add(-3 * day), Status: "error", Error: "boom"})},
			wantStatus: store.Unknown, wantReason: "no fresh evidence: newest is 72h0m0s old (window 48h0m0s); it said: diskencryption collection failed: boom", wantSeq: 5},
	})

	short, err := controls.Parse([]byte(policy(`{"id": "S", "check": "firewall", "max_age": "30m"}`)))
	if err != nil {
		t.Fatal(err)
	}
	fw := evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny, Reason: "inbound default deny", DecidedBy: "nftables"}
	runEval(t, short, []evalCase{
		{name: "custom max_age 30m, 20m old", in: controls.Input{Latest: latest(okObs(t, evidence.Firewall, 6, now.Add(-20*time.Minute), fw))}, wantStatus: store.Pass, wantReason: "inbound default deny", wantSeq: 6},
		{name: "custom max_age 30m, 1h old", in: controls.Input{Latest: latest(okObs(t, evidence.Firewall, 6, now.Add(-time.Hour), fw))}, wantStatus: store.Unknown, wantReason: "no fresh evidence: newest is 1h0m0s old (window 30m0s)", wantSeq: 6},
	})
}

// TestEvaluateAll runs the whole default pack on one device's evidence: one
// evaluation per control, in policy order.
func TestEvaluateAll(t *testing.T) {
	yes := true
	seen := now.Add(-10 * time.Minute)
	in := controls.Input{Now: now, LastSeen: &seen, Latest: latest(
		okObs(t, evidence.DiskEncryption, 1, collected, evidence.DiskEncryptionPayload{Volumes: []evidence.DiskVolume{{Device: "/dev/sda1", Mountpoints: []string{"/"}, Encrypted: true, Method: "LUKS2"}}}),
		withParser(okObs(t, evidence.Patches, 2, collected, withIndex(evidence.PatchesPayload{Manager: "apt", AutoUpdates: &evidence.AutoUpdates{Enabled: true, Mechanism: "unattended-upgrades"}}, collected)), 3),
		okObs(t, evidence.Firewall, 3, collected, evidence.FirewallPayload{Enabled: false}),
		okObs(t, evidence.SecureBoot, 4, collected, evidence.SecureBootPayload{UEFI: true, Enabled: &yes}),
		okObs(t, evidence.TPM, 5, collected, evidence.TPMPayload{Present: true, Version: "2.0"}),
	)}
	want := map[string]struct {
		status string
		seq    uint64
	}{
		"DC-ENC-01": {store.Pass, 1}, "DC-PATCH-01": {store.Pass, 2}, "DC-PATCH-02": {store.Pass, 2}, "DC-FW-01": {store.Fail, 3},
		"DC-BOOT-01": {store.Pass, 4}, "DC-TPM-01": {store.Unknown, 5}, "DC-MAL-01": {store.Unknown, 0}, "DC-LOCK-01": {store.Unknown, 0}, "DC-AGENT-01": {store.Pass, 0},
	}
	p := controls.Default()
	evals := p.Evaluate(in)
	if len(evals) != len(p.Controls) {
		t.Fatalf("%d evaluations for %d controls", len(evals), len(p.Controls))
	}
	for i, e := range evals {
		if e.Control.ID != p.Controls[i].ID {
			t.Errorf("evaluation %d is %s, want %s", i, e.Control.ID, p.Controls[i].ID)
		}
		w := want[e.Control.ID]
		if e.Status != w.status || e.EvidenceSeq != w.seq {
			t.Errorf("%s = %s seq %d (%s), want %s seq %d", e.Control.ID, e.Status, e.EvidenceSeq, e.Reason, w.status, w.seq)
		}
	}
}

func TestEvaluateInvalidParams(t *testing.T) {
	// A policy built in code bypasses Parse; Evaluate must still not panic.
	p := &controls.Policy{Version: 1, Controls: []controls.Control{{ID: "X", Check: "security_patches",
		MaxAge: controls.Duration{Duration: time.Hour}, Params: json.RawMessage(`{"max_days": -3}`)}}}
	runEval(t, p, []evalCase{{name: "negative max_days", in: controls.Input{}, wantStatus: store.Unknown, wantReason: "invalid policy params: max_days must not be negative"}})
}

func TestEvaluationState(t *testing.T) {
	exit := 0
	srcs, err := json.Marshal([]evidence.Source{{Kind: "command", Ref: "/usr/sbin/nft -j list ruleset", ExitCode: &exit}})
	if err != nil {
		t.Fatal(err)
	}
	o := okObs(t, evidence.Firewall, 42, collected, evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny, DecidedBy: "nftables",
		Backends: []evidence.FirewallBackend{{Name: "nftables", Active: true, InboundDefaultDeny: true}}})
	o.Sources = srcs
	e := only(t, "DC-FW-01").Evaluate(controls.Input{Now: now, Latest: latest(o)})[0]
	st := e.State()
	if st.ControlID != "DC-FW-01" || st.Status != store.Pass || st.EvidenceSeq != 42 || st.Reason != e.Reason {
		t.Errorf("State() = %+v", st)
	}
	var ev struct {
		Collector   string                   `json:"collector"`
		Seq         uint64                   `json:"seq"`
		CollectedAt time.Time                `json:"collected_at"`
		Facts       evidence.FirewallPayload `json:"facts"`
		Sources     []evidence.Source        `json:"sources"`
	}
	if err := json.Unmarshal(st.Evidence, &ev); err != nil {
		t.Fatalf("evidence %s: %v", st.Evidence, err)
	}
	if ev.Collector != evidence.Firewall || ev.Seq != 42 || !ev.CollectedAt.Equal(collected) {
		t.Errorf("evidence = %s", st.Evidence)
	}
	if len(ev.Facts.Backends) != 1 || ev.Facts.Backends[0].Name != "nftables" || ev.Facts.Verdict != evidence.FirewallVerdictDeny {
		t.Errorf("evidence facts = %+v", ev.Facts)
	}
	if len(ev.Sources) != 1 || ev.Sources[0].Ref != "/usr/sbin/nft -j list ruleset" || ev.Sources[0].ExitCode == nil || *ev.Sources[0].ExitCode != 0 {
		t.Errorf("evidence sources = %+v", ev.Sources)
	}

	// No evidence (the agent never reported): no evidence JSON, seq 0.
	e = only(t, "DC-AGENT-01").Evaluate(controls.Input{Now: now})[0]
	if st := e.State(); st.Evidence != nil || st.EvidenceSeq != 0 || st.Status != store.Unknown {
		t.Errorf("State() without evidence = %+v", st)
	}
}

// The stored sources are copied into each control's evidence as they are:
// the evidence must stay one JSON object with them, and leave out sources
// that are not JSON (a damaged row) rather than store invalid evidence.
func TestEvaluationStateSources(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources string
		want    any // decoded "sources"; nil: absent
	}{
		{"compact", `[{"kind":"command","ref":"ufw status"}]`, []any{map[string]any{"kind": "command", "ref": "ufw status"}}},
		{"spaced, with markup", "[ {\"kind\": \"file\", \"excerpt\": \"<a & b>\"} ]", []any{map[string]any{"kind": "file", "excerpt": "<a & b>"}}},
		{"empty list", `[]`, []any{}},
		{"null", `null`, nil},
		{"not JSON", `[{"kind":`, nil},
		{"trailing garbage", `[] x`, nil},
		{"none", ``, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := okObs(t, evidence.Firewall, 7, collected, evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny, DecidedBy: "nftables",
				Backends: []evidence.FirewallBackend{{Name: "nftables", Active: true, InboundDefaultDeny: true}}})
			o.Sources = []byte(tc.sources)
			st := only(t, "DC-FW-01").Evaluate(controls.Input{Now: now, Latest: latest(o)})[0].State()
			var ev map[string]any
			if err := json.Unmarshal(st.Evidence, &ev); err != nil {
				t.Fatalf("evidence %s is not a JSON object: %v", st.Evidence, err)
			}
			if ev["collector"] != evidence.Firewall || ev["seq"] != float64(7) || ev["facts"] == nil {
				t.Errorf("evidence = %s", st.Evidence)
			}
			got, ok := ev["sources"]
			if tc.want == nil {
				if ok {
					t.Errorf("evidence %s has sources, want none", st.Evidence)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("sources = %#v, want %#v (evidence %s)", got, tc.want, st.Evidence)
			}
		})
	}
}

// The open interval carries "pending since" forward, so scoring does not
// rescan history; a stale or foreign interval falls back to the history.
func TestSecurityPatchesCarriesPendingSince(t *testing.T) {
	pl := func(pending int) evidence.PatchesPayload {
		return evidence.PatchesPayload{Manager: "apt", OS: evidence.OSRelease{ID: "debian", VersionID: "12"}, PendingSecurityUpdates: pending}
	}
	newest := okObs(t, evidence.Patches, 50, collected, withIndex(pl(3), collected))
	// A run that began at since, a day after a report with none pending.
	prev := func(seq uint64, pending int, since time.Time) map[string]store.ControlState {
		ev, _ := json.Marshal(map[string]any{"seq": seq, "collected_at": since.Format(time.RFC3339Nano), "facts": map[string]any{
			"pending_security_updates": pending, "pending_since": since.Format(time.RFC3339Nano), "pending_after": since.Add(-day).Format(time.RFC3339Nano)}})
		return map[string]store.ControlState{"DC-PATCH-01": {ControlID: "DC-PATCH-01", Status: store.Pass, Evidence: ev}}
	}
	unbounded := func(seq uint64, since time.Time) map[string]store.ControlState {
		ev, _ := json.Marshal(map[string]any{"seq": seq, "facts": map[string]any{
			"pending_security_updates": 2, "pending_since": since.Format(time.RFC3339Nano), "pending_after": ""}})
		return map[string]store.ControlState{"DC-PATCH-01": {ControlID: "DC-PATCH-01", Status: store.Unknown, Evidence: ev}}
	}
	// Stored before the bound was recorded: rescanned.
	older := func(seq uint64, since time.Time) map[string]store.ControlState {
		ev, _ := json.Marshal(map[string]any{"seq": seq, "facts": map[string]any{
			"pending_security_updates": 2, "pending_since": since.Format(time.RFC3339Nano)}})
		return map[string]store.ControlState{"DC-PATCH-01": {ControlID: "DC-PATCH-01", Status: store.Pass, Evidence: ev}}
	}
	// None pending, but not a pass (a stale index): no bound.
	staleZero := func(seq uint64) map[string]store.ControlState {
		ev, _ := json.Marshal(map[string]any{"seq": seq, "facts": map[string]any{"pending_security_updates": 0}})
		return map[string]store.ControlState{"DC-PATCH-01": {ControlID: "DC-PATCH-01", Status: store.Unknown, Evidence: ev}}
	}
	noHistory := func(string, int) ([]store.Observation, error) {
		t.Error("history scanned although the open interval says since when")
		return nil, nil
	}
	runEval(t, only(t, "DC-PATCH-01"), []evalCase{
		{name: "pending since 20 days, from the interval", in: controls.Input{Latest: latest(newest), Current: prev(49, 2, collected.Add(-20*day)), History: noHistory},
			wantStatus: store.Fail, wantReason: "for 20 days as seen by the server, longer than", wantSeq: 50},
		{name: "pending since 3 days, from the interval", in: controls.Input{Latest: latest(newest), Current: prev(49, 2, collected.Add(-3*day)), History: noHistory},
			wantStatus: store.Pass, wantReason: "for 3 days", wantSeq: 50},
		{name: "previous had none pending: starts now", in: controls.Input{Latest: latest(newest), Current: prev(49, 0, collected.Add(-time.Hour)), History: noHistory},
			wantStatus: store.Pass, wantReason: "less than a day", wantSeq: 50},
		{name: "interval from a newer observation is not trusted", in: controls.Input{Latest: latest(newest), Current: prev(60, 2, collected.Add(-30*day)),
			History: history(newest, okObs(t, evidence.Patches, 49, collected.Add(-2*day), withIndex(pl(1), collected.Add(-2*day))), okObs(t, evidence.Patches, 48, collected.Add(-3*day), withIndex(pl(0), collected.Add(-3*day))))},
			wantStatus: store.Pass, wantReason: "for 2 days", wantSeq: 50},
		{name: "an unbounded run stays unbounded", in: controls.Input{Latest: latest(newest), Current: unbounded(49, collected.Add(-3*day)), History: noHistory},
			wantStatus: store.Unknown, wantReason: "for 3 days as seen by the server; released on an unknown date", wantSeq: 50},
		{name: "an interval without the bound is rescanned", in: controls.Input{Latest: latest(newest), Current: older(49, collected.Add(-3*day)),
			History: history(newest, okObs(t, evidence.Patches, 49, collected.Add(-3*day), withIndex(pl(1), collected.Add(-3*day))))},
			wantStatus: store.Unknown, wantReason: "for 3 days as seen by the server; released on an unknown date", wantSeq: 50},
		{name: "none pending without a pass is rescanned", in: controls.Input{Latest: latest(newest), Current: staleZero(49),
			History: history(newest, okObs(t, evidence.Patches, 49, collected.Add(-20*day), withIndex(pl(1), collected.Add(-20*day))))},
			wantStatus: store.Fail, wantReason: "for 20 days as seen by the server, longer than", wantSeq: 50},
	})
}
