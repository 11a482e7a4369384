package controls_test

import (
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

// v2 wraps groups and controls JSON into a version 2 policy document.
func v2(groupsJSON, controlsJSON string) string {
	if groupsJSON == "" {
		groupsJSON = "{}"
	}
	return `{"version": 2, "name": "test", "groups": ` + groupsJSON + `, "controls": [` + controlsJSON + `]}`
}

func mustParse(t *testing.T, doc string) *controls.Policy {
	t.Helper()
	p, err := controls.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

var fwDeny = evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny, Reason: "IPv4 inbound denied by default", DecidedBy: "nftables",
	Backends: []evidence.FirewallBackend{{Name: "nftables", Active: true, InboundDefaultDeny: true}}}

var testGroups = `{"engineering": "device.hostname.startsWith('eng-')", "servers": "device.os == 'linux' && device.hostname.startsWith('srv-')"}`

func TestAppliesTo(t *testing.T) {
	fw := okObs(t, evidence.Firewall, 7, collected, fwDeny)
	tests := []struct {
		name      string
		appliesTo string
		device    *controls.DeviceFacts
		want      string
		reason    string
	}{
		{"linux in scope", `device.os == 'linux'`, &controls.DeviceFacts{OS: "linux"}, store.Pass, "inbound denied by default"},
		{"darwin out of scope", `device.os == 'linux'`, &controls.DeviceFacts{OS: "darwin"}, store.NotApplicable, "out of scope: device.os == 'linux'"},
		{"no device facts", `device.os == 'linux'`, nil, store.NotApplicable, "out of scope"},
		{"group member", `'engineering' in device.groups`, &controls.DeviceFacts{OS: "darwin", Hostname: "eng-mbp-7"}, store.Pass, ""},
		{"not a group member", `'engineering' in device.groups`, &controls.DeviceFacts{OS: "darwin", Hostname: "sales-1"}, store.NotApplicable, "out of scope: 'engineering' in device.groups"},
		{"excluded group", `!('servers' in device.groups)`, &controls.DeviceFacts{OS: "linux", Hostname: "srv-db1"}, store.NotApplicable, ""},
		{"excluded group other os", `!('servers' in device.groups)`, &controls.DeviceFacts{OS: "windows", Hostname: "srv-db1"}, store.Pass, ""},
		{"caller-supplied group", `'laptops' in device.groups || 'x' in device.groups`, &controls.DeviceFacts{OS: "linux", Groups: []string{"laptops"}}, store.Pass, ""},
		{"os_version", `device.os_version.startsWith('24.')`, &controls.DeviceFacts{OS: "linux", OSVersion: "24.04"}, store.Pass, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := testGroups
			if strings.Contains(tt.appliesTo, "'laptops'") {
				g = `{"x": "false", "laptops": "false"}`
			}
			p := mustParse(t, v2(g, `{"id": "FW", "check": "firewall", "applies_to": "`+strings.ReplaceAll(tt.appliesTo, `"`, `\"`)+`"}`))
			e := p.Evaluate(controls.Input{Now: now, Latest: latest(fw), Device: tt.device})[0]
			if e.Status != tt.want || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("got %s %q, want %s containing %q", e.Status, e.Reason, tt.want, tt.reason)
			}
		})
	}
}

func TestGroupsOf(t *testing.T) {
	p := mustParse(t, v2(testGroups, ""))
	d, err := p.GroupsOf(&controls.DeviceFacts{OS: "linux", Hostname: "srv-1", Groups: []string{"zeta"}})
	if err != nil || strings.Join(d.Groups, ",") != "servers,zeta" {
		t.Errorf("GroupsOf = %v, %v; want servers,zeta", d.Groups, err)
	}
	d, err = p.GroupsOf(nil)
	if err != nil || d.Groups == nil || len(d.Groups) != 0 {
		t.Errorf("GroupsOf(nil) = %#v, %v", d.Groups, err)
	}
}

func TestGrace(t *testing.T) {
	fwOpen := okObs(t, evidence.Firewall, 7, collected, evidence.FirewallPayload{Enabled: true, Verdict: evidence.FirewallVerdictOpen, Reason: "IPv4 tcp open", DecidedBy: "nftables"})
	p := mustParse(t, v2("", `{"id": "FW", "check": "firewall", "grace": "72h"}`))
	tests := []struct {
		name      string
		obs       store.Observation
		current   map[string]store.ControlState
		wantState string
		inGrace   bool
		until     time.Time
		reason    string
	}{
		{name: "newly failing", obs: fwOpen, wantState: store.Fail, inGrace: true, until: now.Add(72 * time.Hour),
			reason: "(within the 72h grace period until 2026-03-04T12:00:00Z)"},
		{name: "was passing", obs: fwOpen, current: map[string]store.ControlState{"FW": {ControlID: "FW", Status: store.Pass, Since: now.Add(-10 * day)}},
			wantState: store.Fail, inGrace: true, until: now.Add(72 * time.Hour)},
		{name: "failing for a day", obs: fwOpen, current: map[string]store.ControlState{"FW": {ControlID: "FW", Status: store.Fail, Since: now.Add(-day)}},
			wantState: store.Fail, inGrace: true, until: now.Add(48 * time.Hour), reason: "until 2026-03-03T12:00:00Z"},
		{name: "failing longer than grace", obs: fwOpen, current: map[string]store.ControlState{"FW": {ControlID: "FW", Status: store.Fail, Since: now.Add(-4 * day)}},
			wantState: store.Fail, inGrace: false},
		{name: "pass has no grace", obs: okObs(t, evidence.Firewall, 7, collected, fwDeny), wantState: store.Pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := p.Evaluate(controls.Input{Now: now, Latest: latest(tt.obs), Current: tt.current})[0]
			if e.Status != tt.wantState || e.InGrace != tt.inGrace || !e.GraceUntil.Equal(tt.until) {
				t.Errorf("got %s in grace %v until %s, want %s %v %s (%s)", e.Status, e.InGrace, e.GraceUntil, tt.wantState, tt.inGrace, tt.until, e.Reason)
			}
			if !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", e.Reason, tt.reason)
			}
			if !tt.inGrace && strings.Contains(e.Reason, "grace") {
				t.Errorf("reason %q mentions grace", e.Reason)
			}
		})
	}
	c := p.Controls[0]
	if in, until := c.GraceFor(now, now.Add(72*time.Hour)); in || !until.Equal(now.Add(72*time.Hour)) {
		t.Errorf("GraceFor at the end = %v %s, want false and the end", in, until)
	}
	if in, until := (controls.Control{}).GraceFor(now, now); in || !until.IsZero() {
		t.Errorf("GraceFor without grace = %v %s", in, until)
	}
}

func TestCELCheck(t *testing.T) {
	const ctl = `{"id": "X-1", "check": "cel", "params": {"collector": "firewall",
		"pass": "payload.enabled && payload.backends.exists(b, b.name == 'nftables' && b.inbound_default_deny)",
		"not_applicable": "device.os == 'darwin'",
		"reason_pass": "nftables denies inbound", "reason_fail": "nftables does not deny inbound"}}`
	p := mustParse(t, v2("", ctl))
	linux := &controls.DeviceFacts{OS: "linux"}
	tests := []struct {
		name   string
		in     controls.Input
		want   string
		reason string
	}{
		{"pass", controls.Input{Latest: latest(okObs(t, evidence.Firewall, 3, collected, fwDeny)), Device: linux}, store.Pass, "nftables denies inbound"},
		{"fail", controls.Input{Latest: latest(okObs(t, evidence.Firewall, 3, collected, evidence.FirewallPayload{Enabled: true, Backends: []evidence.FirewallBackend{{Name: "iptables", Active: true}}})), Device: linux}, store.Fail, "nftables does not deny inbound"},
		{"not applicable", controls.Input{Latest: latest(okObs(t, evidence.Firewall, 3, collected, fwDeny)), Device: &controls.DeviceFacts{OS: "darwin"}}, store.NotApplicable, "not applicable: device.os == 'darwin'"},
		{"payload missing", controls.Input{Device: linux}, store.Unknown, "no firewall evidence received yet"},
		{"runtime error", controls.Input{Latest: latest(okObs(t, evidence.Firewall, 3, collected, map[string]any{"enabled": true})), Device: linux}, store.Unknown, "pass expression failed: no such key: backends"},
		{"stale", controls.Input{Latest: latest(okObs(t, evidence.Firewall, 3, now.Add(-3*day), fwDeny)), Device: linux}, store.Unknown, "no fresh evidence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now = now
			e := p.Evaluate(tt.in)[0]
			if e.Status != tt.want || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("got %s %q, want %s containing %q", e.Status, e.Reason, tt.want, tt.reason)
			}
		})
	}
}

func TestCELCheckVariables(t *testing.T) {
	fw := okObs(t, evidence.Firewall, 9, collected, fwDeny)
	tests := []struct {
		name, pass, want string
	}{
		{"observation", `observation.collector == 'firewall' && observation.seq == 9u && observation.status == 'ok'`, store.Pass},
		{"now and collected_at", `now - observation.collected_at < duration('2h')`, store.Pass},
		{"list size", `size(payload.backends) == 1 && payload.backends[0].active`, store.Pass},
		{"has guards a missing key", `has(payload.nope) && payload.nope`, store.Fail},
		{"default reason", `!payload.enabled`, store.Fail},
		// has(...) first: on a device with no data (the trial run at
		// load) the expression is cheap; on this evidence it is not.
		{"cost limit", `has(payload.enabled) && [1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))`, store.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, v2("", `{"id": "X", "check": "cel", "params": {"collector": "firewall", "pass": "`+strings.ReplaceAll(tt.pass, `"`, `\"`)+`"}}`))
			e := p.Evaluate(controls.Input{Now: now, Latest: latest(fw)})[0]
			if e.Status != tt.want {
				t.Errorf("got %s %q, want %s", e.Status, e.Reason, tt.want)
			}
			if tt.name == "default reason" && e.Reason != "false: !payload.enabled" {
				t.Errorf("reason %q", e.Reason)
			}
			if tt.name == "cost limit" && !strings.Contains(e.Reason, "cost limit exceeded") {
				t.Errorf("reason %q, want cost limit exceeded", e.Reason)
			}
		})
	}
}

func TestParseExpressions(t *testing.T) {
	long := strings.Repeat("true && ", 300) + "true"
	tests := []struct {
		name, in, wantErr string
	}{
		{"valid v2", v2(testGroups, `{"id": "A", "check": "firewall", "applies_to": "'servers' in device.groups", "grace": "3d"}`), ""},
		{"v1 with description", policy(`{"id": "A", "check": "firewall", "description": "why"}`), ""},
		{"bad syntax", v2("", `{"id": "X-1", "check": "cel", "params": {"collector": "firewall", "pass": "payload.enabled &&"}}`),
			"control X-1: params: pass: ERROR: <input>:1:19: Syntax error"},
		{"undeclared variable", v2("", `{"id": "X-1", "check": "cel", "params": {"collector": "firewall", "pass": "payloadd.enabled"}}`),
			"control X-1: params: pass: ERROR: <input>:1:1: undeclared reference to 'payloadd'"},
		{"undefined device field", v2("", `{"id": "A", "check": "firewall", "applies_to": "device.hostnme == 'x'"}`),
			"control A: applies_to: ERROR: <input>:1:7: undefined field 'hostnme'"},
		{"non-bool", v2("", `{"id": "A", "check": "firewall", "applies_to": "device.hostname"}`),
			"control A: applies_to: expression must be a bool, not string"},
		{"non-bool not_applicable", v2("", `{"id": "X-1", "check": "cel", "params": {"collector": "firewall", "pass": "true", "not_applicable": "1 + 1"}}`),
			"control X-1: params: not_applicable: expression must be a bool, not int"},
		{"type error", v2("", `{"id": "A", "check": "firewall", "applies_to": "device.os == 1"}`),
			"control A: applies_to: ERROR: <input>:1:11: found no matching overload for '_==_'"},
		{"unknown group", v2(testGroups, `{"id": "A", "check": "firewall", "applies_to": "'enginering' in device.groups"}`),
			`control A: applies_to: group "enginering" is not defined in groups`},
		{"group uses groups", v2(`{"g": "'x' in device.groups"}`, ""), "group g: ERROR: <input>:1:14: undefined field 'groups'"},
		{"group bad name", v2(`{"a b": "true"}`, ""), `group "a b": name must be`},
		{"too long", v2("", `{"id": "A", "check": "firewall", "applies_to": "`+long+`"}`), "control A: applies_to: expression is 2404 characters long, more than the limit of 2048"},
		{"empty pass", v2("", `{"id": "X-1", "check": "cel", "params": {"collector": "firewall"}}`), "control X-1: params: pass: an expression is required"},
		{"bad collector", v2("", `{"id": "X-1", "check": "cel", "params": {"collector": "Fire Wall", "pass": "true"}}`), `collector "Fire Wall" is not one of antimalware, diskencryption, firewall`},
		{"unknown cel param", v2("", `{"id": "X-1", "check": "cel", "params": {"collector": "firewall", "pass": "true", "fail": "false"}}`), `unknown field "fail"`},
		{"v1 applies_to", policy(`{"id": "A", "check": "firewall", "applies_to": "true"}`), `control A: applies_to needs "version": 2`},
		{"v1 grace", policy(`{"id": "A", "check": "firewall", "grace": "1h"}`), `control A: grace needs "version": 2`},
		{"v1 cel", policy(`{"id": "A", "check": "cel", "params": {"collector": "firewall", "pass": "true"}}`), `control A: check "cel" needs "version": 2`},
		{"v2 unknown field", v2("", `{"id": "A", "check": "firewall", "applies-to": "true"}`), `unknown field "applies-to"`},
		{"bad grace", v2("", `{"id": "A", "check": "firewall", "grace": "soon"}`), `invalid duration "soon"`},
		{"all problems", v2(`{"g": "nope"}`, `{"id": "A", "check": "nope"}, {"id": "B", "check": "firewall", "applies_to": "1"}`),
			"group g: ERROR: <input>:1:1: undeclared reference to 'nope'" + "\n" + ` | nope` + "\n" + ` | ^` + "\n" +
				`control A: unknown check "nope"` + "\n" + "control B: applies_to: expression must be a bool, not int: 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := controls.Parse([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || p != nil {
				t.Fatalf("Parse = %v, %v; want error containing %q", p, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse error =\n%s\nwant it to contain\n%s", err, tt.wantErr)
			}
		})
	}
}

func TestDurationDays(t *testing.T) {
	var d controls.Duration
	if err := d.UnmarshalJSON([]byte(`"14d"`)); err != nil || d.Duration != 14*day {
		t.Errorf("14d = %s, %v", d, err)
	}
	if err := d.UnmarshalJSON([]byte(`"0d"`)); err == nil {
		t.Errorf("0d accepted")
	}
}

func TestExamplePolicy(t *testing.T) {
	p, err := controls.Load("testdata/example-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 2 || len(p.Groups) == 0 {
		t.Errorf("example policy: version %d, %d groups", p.Version, len(p.Groups))
	}
	for _, c := range p.Controls {
		if c.Description == "" {
			t.Errorf("example control %s has no description", c.ID)
		}
	}
	// Every control evaluates without panicking on a device with no evidence.
	for _, e := range p.Evaluate(controls.Input{Now: now, Device: &controls.DeviceFacts{OS: "linux", Hostname: "srv-1"}}) {
		if e.Status == "" {
			t.Errorf("%s: empty status", e.Control.ID)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(v2(testGroups, `{"id": "A", "check": "firewall", "applies_to": "'servers' in device.groups", "grace": "3d"}`)))
	f.Add([]byte(v2("", `{"id": "X-1", "check": "cel", "params": {"collector": "firewall", "pass": "payload.enabled"}}`)))
	f.Add([]byte(policy(`{"id": "A", "check": "security_patches", "params": {"max_days": 3}}`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := controls.Parse(b)
		if err != nil {
			return
		}
		p.Evaluate(controls.Input{Now: now, Device: &controls.DeviceFacts{OS: "linux"},
			Latest: latest(store.Observation{Seq: 1, Collector: "firewall", CollectedAt: collected, Status: "ok", Payload: []byte(`{"enabled": true, "backends": []}`)})})
	})
}
