package controls_test

import (
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

// TestRescoreAt checks the promise the periodic rescore relies on: an
// evaluation made at `at` gives the same statuses at every moment before
// RescoreAt(at), and (unless RescoreAt is the daily cap) a different one
// just after it, so a device that is not due needs no evaluation.
func TestRescoreAt(t *testing.T) {
	fwOpen := evidence.FirewallPayload{Enabled: true, Verdict: evidence.FirewallVerdictOpen, Reason: "IPv4 tcp open", DecidedBy: "nftables"}
	withGrace := mustParse(t, v2("", `{"id": "FW", "check": "firewall", "grace": "72h", "max_age": "48h"},
		{"id": "AGENT", "check": "agent_fresh", "max_age": "24h"}`))
	withCEL := mustParse(t, v2("", `{"id": "C", "check": "cel", "params": {"collector": "firewall", "pass": "payload.enabled == true"}},
		{"id": "FW", "check": "firewall"}`))
	tests := []struct {
		name   string
		p      *controls.Policy
		in     controls.Input
		want   time.Duration // RescoreAt - now
		change bool          // a status differs just after RescoreAt
	}{
		{name: "no evidence: only the daily evaluation", p: controls.Default(), in: controls.Input{},
			want: controls.MaxRescoreGap},
		{name: "agent report an hour old: DC-AGENT-01 fails after 24 h", p: only(t, "DC-AGENT-01"),
			in:   controls.Input{Latest: latest(okObs(t, evidence.TPM, 1, now.Add(-time.Hour), evidence.TPMPayload{}))},
			want: 23*time.Hour + time.Nanosecond, change: true},
		{name: "firewall deny 47 h old: unknown after 48 h", p: only(t, "DC-FW-01"),
			in:   controls.Input{Latest: latest(okObs(t, evidence.Firewall, 1, now.Add(-47*time.Hour), fwDeny))},
			want: time.Hour + time.Nanosecond, change: true},
		{name: "already stale: only the daily evaluation", p: only(t, "DC-FW-01"),
			in:   controls.Input{Latest: latest(okObs(t, evidence.Firewall, 1, now.Add(-50*time.Hour), fwDeny))},
			want: controls.MaxRescoreGap},
		{name: "the earliest of several", p: withGrace,
			in: controls.Input{Latest: latest(okObs(t, evidence.Firewall, 1, now.Add(-40*time.Hour), fwOpen)),
				Current: map[string]store.ControlState{"FW": {ControlID: "FW", Status: store.Fail, Since: now.Add(-70 * time.Hour)}}},
			want: 2 * time.Hour, change: true}, // grace ends before the evidence (8 h) or the agent report (16 h) runs out
		{name: "a CEL check may read now: every rescore", p: withCEL,
			in:   controls.Input{Latest: latest(okObs(t, evidence.Firewall, 1, now.Add(-time.Hour), fwDeny))},
			want: 0},
	}
	statuses := func(p *controls.Policy, in controls.Input, at time.Time) map[string]string {
		in.Now = at
		m := map[string]string{}
		for _, e := range p.Evaluate(in) {
			m[e.Control.ID] = e.Status + map[bool]string{true: " in grace"}[e.InGrace]
		}
		return m
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Now = now
			got := controls.RescoreAt(tt.p.Evaluate(in), now)
			if d := got.Sub(now); d != tt.want {
				t.Fatalf("RescoreAt = now + %s; want now + %s", d, tt.want)
			}
			before := statuses(tt.p, tt.in, now)
			for _, f := range []float64{0.25, 0.5, 0.999} {
				at := now.Add(time.Duration(float64(got.Sub(now)) * f))
				if s := statuses(tt.p, tt.in, at); !equal(s, before) {
					t.Errorf("at now + %s, before RescoreAt: %v; at now: %v", at.Sub(now), s, before)
				}
			}
			if at := got.Add(-time.Nanosecond); got.After(now) && !equal(statuses(tt.p, tt.in, at), before) {
				t.Errorf("a nanosecond before RescoreAt: %v; at now: %v", statuses(tt.p, tt.in, at), before)
			}
			if after := statuses(tt.p, tt.in, got); equal(after, before) == tt.change {
				t.Errorf("at RescoreAt: %v; at now: %v; want a change: %v", after, before, tt.change)
			}
		})
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
