// Package webtest seeds a store with a small, fixed fleet for the web UI's
// tests (server/web unit tests and the headless-browser tests in
// test/webui): three devices with 30 days of evidence and control
// intervals, an admin token and an auditor token. Everything goes through
// the store API; nothing reads the wall clock.
package webtest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/scorer"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/web"
)

// Now is the fixture's clock.
var Now = time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)

// Device ids.
const (
	Alice = "dev_alice0000000000000001" // linux, compliant now, firewall failed for a week mid-period
	Bob   = "dev_bob000000000000000002" // darwin, firewall accepts inbound: failing now
	Carol = "dev_carol0000000000000003" // windows, silent for five days: stale
)

const policyJSON = `{
  "version": 2,
  "name": "webtest controls",
  "groups": {"laptops": "device.os == 'darwin' || device.os == 'linux'", "desktops": "device.os == 'windows'"},
  "controls": [
    {"id": "DC-FW-01", "title": "Host firewall enabled, inbound default deny", "criteria": ["CC6.6"], "check": "firewall", "max_age": "48h",
     "remediation": {"darwin": "Turn on the firewall: System Settings > Network > Firewall.", "default": "Enable a firewall that drops inbound connections."}},
    {"id": "DC-BOOT-01", "title": "Secure Boot enabled", "criteria": ["CC6.8", "CC7.1"], "check": "secure_boot", "max_age": "48h"},
    {"id": "DC-AGENT-01", "title": "Evidence is fresh (agent reported within the window)", "criteria": ["CC7.2"], "check": "agent_fresh", "max_age": "24h"}
  ]
}`

// Policy is the fixture's three-control policy.
func Policy(t testing.TB) *controls.Policy {
	t.Helper()
	p, err := controls.Parse([]byte(policyJSON))
	if err != nil {
		t.Fatalf("webtest policy: %v", err)
	}
	return p
}

// Fleet is what Seed made.
type Fleet struct {
	Policy       *controls.Policy
	AdminToken   string
	AuditorToken string
}

func days(n float64) time.Duration { return time.Duration(n * 24 * float64(time.Hour)) }

// Seed fills an empty store.
func Seed(t testing.TB, st store.Store) Fleet {
	t.Helper()
	ctx := context.Background()
	p := Policy(t)
	f := Fleet{Policy: p}
	for _, d := range []store.Device{
		{ID: Alice, Hostname: "laptop-alice", GOOS: "linux", GOARCH: "amd64", OSVersion: "Debian GNU/Linux 12", MachineID: "m-alice", AgentVersion: "0.3.0", EnrolledAt: Now.Add(-days(25))},
		{ID: Bob, Hostname: "macbook-bob", GOOS: "darwin", GOARCH: "arm64", OSVersion: "macOS 15.3", MachineID: "m-bob", AgentVersion: "0.3.0", EnrolledAt: Now.Add(-days(20))},
		{ID: Carol, Hostname: "desk-carol", GOOS: "windows", GOARCH: "amd64", OSVersion: "Windows 11 23H2", MachineID: "m-carol", AgentVersion: "0.3.0", EnrolledAt: Now.Add(-days(12))},
	} {
		if _, err := st.EnrollDevice(ctx, d); err != nil {
			t.Fatalf("EnrollDevice(%s): %v", d.Hostname, err)
		}
	}
	on, off := true, false
	deny := evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny, Reason: "IPv4 inbound denied by default; IPv6 inbound denied by default", DecidedBy: "nftables",
		Backends: []evidence.FirewallBackend{{Name: "nftables", Active: true, InboundDefaultDeny: true, Detail: "chain input policy drop"}}}
	openFW := evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: false, Verdict: evidence.FirewallVerdictOpen, Reason: "Application Firewall off (state 0)", DecidedBy: "alf",
		Backends: []evidence.FirewallBackend{{Name: "alf", Active: false, Detail: "global state 0"}}}
	noFW := evidence.FirewallPayload{Verdict: evidence.FirewallVerdictOpen, Reason: "IPv4 tcp open: no input filter for ip", Backends: []evidence.FirewallBackend{{Name: "nftables", Active: false}}}
	sb := evidence.SecureBootPayload{UEFI: true, Enabled: &on, SetupMode: &off, ShimValidation: &on}
	fwSrc := evidence.Source{Kind: "command", Ref: "/usr/sbin/nft -j list ruleset", ExitCode: new(int), Excerpt: `"policy": "drop"`}
	sbSrc := evidence.Source{Kind: "file", Ref: "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c", Excerpt: "06 00 00 00 01"}

	type report struct {
		at time.Duration // before Now
		fw evidence.FirewallPayload
	}
	script := map[string][]report{
		Alice: {{days(25), deny}, {days(15), noFW}, {days(8), deny}, {time.Hour, deny}},
		Bob:   {{days(20), openFW}, {days(2), openFW}, {2 * time.Hour, openFW}},
		Carol: {{days(12), deny}, {days(5), deny}},
	}
	for _, id := range []string{Alice, Bob, Carol} {
		var seq uint64
		for _, r := range script[id] {
			at := Now.Add(-r.at)
			seq += 2
			obs := []store.Observation{
				observation(t, seq-1, evidence.Firewall, at, r.fw, fwSrc),
				observation(t, seq, evidence.SecureBoot, at, sb, sbSrc),
			}
			if _, err := st.Ingest(ctx, id, obs, at); err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			score(t, st, p, id, at)
		}
	}
	// The server's periodic rescoring: Carol has gone silent.
	score(t, st, p, Carol, Now.Add(-30*time.Minute))

	for _, tk := range []struct {
		role, label string
		out         *string
	}{{store.RoleAdmin, "alice-admin", &f.AdminToken}, {store.RoleAuditor, "external-auditor", &f.AuditorToken}} {
		tok, id, hash := web.NewToken()
		exp := Now.Add(web.DefaultTokenTTL)
		if err := st.CreateToken(ctx, store.Token{ID: id, Hash: hash, Role: tk.role, Label: tk.label, CreatedAt: Now.Add(-days(1)), ExpiresAt: &exp}); err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		*tk.out = tok
	}
	return f
}

func observation(t testing.TB, seq uint64, collector string, at time.Time, payload any, src evidence.Source) store.Observation {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := json.Marshal([]evidence.Source{src})
	if err != nil {
		t.Fatal(err)
	}
	return store.Observation{Seq: seq, Collector: collector, CollectedAt: at, Status: "ok", ParserVersion: 2, Payload: b, Sources: s}
}

// score evaluates the policy on the device's stored evidence as of at and
// records the states, as the ingest server does.
func score(t testing.TB, st store.Store, p *controls.Policy, id string, at time.Time) {
	t.Helper()
	if err := scorer.Score(context.Background(), st, p, id, at); err != nil {
		t.Fatalf("score: %v", err)
	}
}
