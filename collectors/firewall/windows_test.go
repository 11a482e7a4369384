package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseFirewallProfiles(t *testing.T) {
	tests := []struct {
		file            string
		enabled, deny   bool
		decidedBy       string
		active          []bool // Domain, Private, Public
		missing         int
		verdict, reason string
	}{
		{file: "profiles-all-on-block.json", enabled: true, deny: true, decidedBy: "windows:Domain", active: []bool{true, true, true},
			verdict: VerdictDeny, reason: "all profiles on with inbound default block"},
		{file: "profiles-notconfigured.json", enabled: true, deny: true, decidedBy: "windows:Domain", active: []bool{true, true, true},
			verdict: VerdictDeny, reason: "all profiles on with inbound default block"},
		{file: "profiles-all-off.json", decidedBy: "windows:Domain", active: []bool{false, false, false},
			verdict: VerdictOpen, reason: "firewall off for the Domain, Private and Public profiles"},
		{file: "profiles-public-off.json", decidedBy: "windows:Public", active: []bool{true, true, false},
			verdict: VerdictOpen, reason: "firewall off for the Public profile"},
		{file: "profiles-private-allow.json", enabled: true, decidedBy: "windows:Private", active: []bool{true, true, true},
			verdict: VerdictOpen, reason: "the Private profile does not block inbound connections by default (DefaultInboundAction 2 Allow)"},
		{file: "profiles-missing-domain.json", active: []bool{true, true}, missing: 1,
			verdict: VerdictUnknown, reason: "firewall state not reported for the Domain profile"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var rows []firewallProfile
			if err := json.Unmarshal(platformtest.ReadFixture(t, "windows/"+tt.file), &rows); err != nil {
				t.Fatal(err)
			}
			p, missing := parseFirewallProfiles(rows)
			if p.Enabled != tt.enabled || p.InboundDefaultDeny != tt.deny || p.DecidedBy != tt.decidedBy || len(missing) != tt.missing {
				t.Errorf("got %+v, missing %v", p, missing)
			}
			if p.Verdict != tt.verdict || p.Reason != tt.reason {
				t.Errorf("verdict %q %q, want %q %q", p.Verdict, p.Reason, tt.verdict, tt.reason)
			}
			if len(p.Backends) != len(tt.active) {
				t.Fatalf("backends %+v", p.Backends)
			}
			for i, b := range p.Backends {
				if b.Active != tt.active[i] || !strings.HasPrefix(b.Name, "windows:") || !strings.Contains(b.Detail, "DefaultInboundAction") {
					t.Errorf("backend %d: %+v", i, b)
				}
			}
		})
	}
}

// TestRuleFilters covers what makes an inbound allow rule "open every
// port": each dimension alone, and the encodings of "any".
func TestRuleFilters(t *testing.T) {
	rule := func(id string, dir, action, enabled, profiles uint16) firewallRule {
		return firewallRule{InstanceID: id, DisplayName: id, Direction: dir, Action: action, Enabled: enabled, Profiles: profiles}
	}
	var got []string
	for _, r := range candidateRules([]firewallRule{
		rule("any-profile", 1, 2, 1, 0), rule("all-three", 1, 2, 1, 7), rule("with-unknown-bit", 1, 2, 1, 0xF),
		rule("domain", 1, 2, 1, 1), rule("private-public", 1, 2, 1, 6), rule("public", 1, 2, 1, 4),
		rule("outbound", 2, 2, 1, 0), rule("disabled", 1, 2, 2, 0), rule("block", 1, 4, 1, 0), rule("allow-bypass", 1, 3, 1, 0),
	}) {
		got = append(got, r.InstanceID)
	}
	if strings.Join(got, ",") != "any-profile,all-three,with-unknown-bit" {
		t.Errorf("candidates %v", got)
	}

	for _, tt := range []struct {
		name string
		f    appFilter
		want bool
	}{
		{"Any", appFilter{AppPath: "Any"}, true},
		{"star", appFilter{AppPath: "*"}, true},
		{"absent", appFilter{}, true},
		{"lower case", appFilter{AppPath: "any"}, true},
		{"System", appFilter{AppPath: "System"}, false},
		{"svchost", appFilter{AppPath: `%SystemRoot%\system32\svchost.exe`}, false},
		{"app package", appFilter{AppPath: "Any", Package: "S-1-15-2-1"}, false},
		{"package star", appFilter{AppPath: "Any", Package: "*"}, true},
	} {
		if got := anyProgram(tt.f); got != tt.want {
			t.Errorf("program %s: %v", tt.name, got)
		}
	}
	for _, tt := range []struct {
		name string
		f    portFilter
		want bool
	}{
		{"Any protocol, Any port", portFilter{Protocol: "Any", LocalPort: []string{"Any"}}, true},
		{"TCP, any port", portFilter{Protocol: "TCP", LocalPort: []string{"Any"}}, true},
		{"UDP number, star", portFilter{Protocol: "17", LocalPort: []string{"*"}}, true},
		{"protocol and ports absent", portFilter{}, true},
		{"TCP 8080", portFilter{Protocol: "TCP", LocalPort: []string{"8080"}}, false},
		{"TCP range of every port", portFilter{Protocol: "TCP", LocalPort: []string{"1-65535"}}, true},
		{"ranges covering every port", portFilter{Protocol: "UDP", LocalPort: []string{"1-1023", "1024", "1025-65535"}}, true},
		{"TCP range", portFilter{Protocol: "TCP", LocalPort: []string{"1024-65535"}}, false},
		{"a port missing", portFilter{Protocol: "TCP", LocalPort: []string{"1-79", "81-65535"}}, false},
		{"Any and a port", portFilter{Protocol: "TCP", LocalPort: []string{"Any", "80"}}, false},
		{"keyword", portFilter{Protocol: "TCP", LocalPort: []string{"RPC"}}, false},
		{"ICMPv4", portFilter{Protocol: "ICMPv4", LocalPort: []string{"Any"}}, false},
		{"IGMP", portFilter{Protocol: "2", LocalPort: []string{"Any"}}, false},
	} {
		if got := anyPort(tt.f); got != tt.want {
			t.Errorf("port %s: %v", tt.name, got)
		}
	}
	for _, tt := range []struct {
		name string
		f    addressFilter
		want bool
	}{
		{"Any", addressFilter{RemoteAddress: []string{"Any"}}, true},
		{"star", addressFilter{RemoteAddress: []string{"*"}}, true},
		{"absent", addressFilter{}, true},
		{"every IPv4 address (prefix)", addressFilter{RemoteAddress: []string{"10.0.0.0/8", "0.0.0.0/0"}}, true},
		{"every IPv4 address (mask)", addressFilter{RemoteAddress: []string{"0.0.0.0/0.0.0.0"}}, true},
		{"every IPv4 address (range)", addressFilter{RemoteAddress: []string{"0.0.0.0-255.255.255.255"}}, true},
		{"every IPv6 address", addressFilter{RemoteAddress: []string{"::/0"}}, true},
		{"half of IPv4", addressFilter{RemoteAddress: []string{"0.0.0.0/1"}}, false},
		{"a range", addressFilter{RemoteAddress: []string{"0.0.0.0-127.255.255.255"}}, false},
		{"LocalSubnet", addressFilter{RemoteAddress: []string{"LocalSubnet"}}, false},
		{"Internet", addressFilter{RemoteAddress: []string{"Internet"}}, false},
		{"a subnet", addressFilter{RemoteAddress: []string{"10.0.0.0/8"}}, false},
	} {
		if got := anyAddress(tt.f); got != tt.want {
			t.Errorf("address %s: %v", tt.name, got)
		}
	}

	// A candidate without a filter row is not ruled out by that filter.
	kept := keep([]firewallRule{rule("listed", 1, 2, 1, 0), rule("unlisted", 1, 2, 1, 0)},
		[]appFilter{{InstanceID: "listed", AppPath: "System"}}, func(f appFilter) string { return f.InstanceID }, anyProgram)
	if len(kept) != 1 || kept[0].InstanceID != "unlisted" {
		t.Errorf("kept %+v", kept)
	}
}

func TestCollectWindows(t *testing.T) {
	fixture := func(name string) string { return string(platformtest.ReadFixture(t, "windows/"+name)) }
	queries := map[string]string{"profiles": profileQuery, "rules": ruleQuery, "apps": appFilterQuery,
		"ports": portFilterQuery, "addresses": addressFilterQuery}
	// host answers each named query with its rows; an absent name is a
	// class the host does not have.
	host := func(rows map[string]string) platformtest.Replay {
		h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: map[string]string{}}
		for name, r := range rows {
			h.WMIResults[netSecurityNamespace+"|"+queries[name]] = r
		}
		return h
	}
	builtin := map[string]string{"profiles": fixture("profiles-all-on-block.json"), "rules": fixture("rules-builtin.json"),
		"apps": fixture("appfilters.json"), "ports": fixture("portfilters.json"), "addresses": fixture("addressfilters.json")}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	const allowAll = `inbound rule "Allow All Inbound" allows any port from any address for any program on all profiles`
	tests := []struct {
		name            string
		rows            map[string]string
		verdict, reason string
		enabled         bool
		openRules       []string
		decidedBy       string
		read            []string // the queries run, in order
	}{
		{name: "built-in and near-miss rules: deny", rows: builtin, verdict: VerdictDeny, enabled: true, decidedBy: "windows:Domain",
			reason: "all profiles on with inbound default block; no inbound rule opens every port",
			read:   []string{"profiles", "rules", "apps", "ports", "addresses"}},
		{name: "an allow-all rule: open", rows: with(builtin, "rules", fixture("rules-allow-all.json")),
			verdict: VerdictOpen, enabled: true, reason: allowAll, openRules: []string{"Allow All Inbound"}, decidedBy: "windows:rules",
			read: []string{"profiles", "rules", "apps", "ports", "addresses"}},
		{name: "no candidate rule: the filters are not read", rows: with(builtin, "rules", `[{"InstanceID":"CoreNet-DHCP-In","DisplayName":"x","Direction":1,"Action":2,"Enabled":1,"Profiles":4}]`),
			verdict: VerdictDeny, enabled: true, decidedBy: "windows:Domain", reason: "all profiles on with inbound default block; no inbound rule opens every port",
			read: []string{"profiles", "rules"}},
		{name: "no enabled inbound allow rule at all", rows: with(builtin, "rules", `[]`),
			verdict: VerdictDeny, enabled: true, decidedBy: "windows:Domain", reason: "all profiles on with inbound default block; no inbound rule opens every port",
			read: []string{"profiles", "rules"}},
		{name: "rule class missing (old Windows): unknown, not deny", rows: with(builtin, "rules", ""),
			verdict: VerdictUnknown, enabled: true, decidedBy: "windows:Domain", read: []string{"profiles", "rules"}},
		{name: "rule rows unreadable: unknown", rows: with(builtin, "rules", `[{"InstanceID": 7}]`),
			verdict: VerdictUnknown, enabled: true, decidedBy: "windows:Domain", read: []string{"profiles", "rules"}},
		{name: "a filter class missing: unknown", rows: with(builtin, "ports", ""),
			verdict: VerdictUnknown, enabled: true, decidedBy: "windows:Domain", read: []string{"profiles", "rules", "apps", "ports"}},
		{name: "profile off and rules unreadable: open", rows: with(builtin, "profiles", fixture("profiles-public-off.json"), "rules", ""),
			verdict: VerdictOpen, reason: "firewall off for the Public profile", decidedBy: "windows:Public", read: []string{"profiles", "rules"}},
		{name: "profile off and an allow-all rule", rows: with(builtin, "profiles", fixture("profiles-all-off.json"), "rules", fixture("rules-allow-all.json")),
			verdict: VerdictOpen, reason: "firewall off for the Domain, Private and Public profiles; " + allowAll, openRules: []string{"Allow All Inbound"},
			decidedBy: "windows:Domain", read: []string{"profiles", "rules", "apps", "ports", "addresses"}},
		{name: "inbound allowed by default on Private", rows: with(builtin, "profiles", fixture("profiles-private-allow.json")),
			verdict: VerdictOpen, enabled: true, decidedBy: "windows:Private",
			reason: "the Private profile does not block inbound connections by default (DefaultInboundAction 2 Allow)",
			read:   []string{"profiles", "rules", "apps", "ports", "addresses"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := New().Collect(context.Background(), host(tt.rows))
			if err != nil {
				t.Fatal(err)
			}
			p := res.Payload.(Payload)
			if p.Verdict != tt.verdict || (tt.reason != "" && p.Reason != tt.reason) {
				t.Errorf("verdict %q %q, want %q %q", p.Verdict, p.Reason, tt.verdict, tt.reason)
			}
			if tt.verdict == VerdictUnknown && !strings.HasPrefix(p.Reason, "cannot read the inbound firewall rules: ") {
				t.Errorf("reason %q", p.Reason)
			}
			if p.InboundDefaultDeny != (tt.verdict == VerdictDeny) || p.Enabled != tt.enabled || p.DecidedBy != tt.decidedBy ||
				strings.Join(p.OpenRules, "|") != strings.Join(tt.openRules, "|") || len(p.Backends) != 3 {
				t.Errorf("payload %+v", p)
			}
			var read []string
			failed := 0
			for _, s := range res.Sources {
				for name, q := range queries {
					if s.Kind == "wmi" && s.Ref == netSecurityNamespace+": "+q {
						read = append(read, name)
					}
				}
				if s.Error != "" {
					failed++
				}
			}
			if want := tt.verdict == VerdictUnknown || strings.Contains(tt.name, "rules unreadable"); (failed == 1) != want || failed > 1 {
				t.Errorf("%d failed reads in %+v", failed, res.Sources)
			}
			if strings.Join(read, ",") != strings.Join(tt.read, ",") {
				t.Errorf("read %v, want %v", read, tt.read)
			}
		})
	}
}

func TestCollectWindowsSources(t *testing.T) {
	h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: map[string]string{
		netSecurityNamespace + "|" + profileQuery:       string(platformtest.ReadFixture(t, "windows/profiles-all-on-block.json")),
		netSecurityNamespace + "|" + ruleQuery:          string(platformtest.ReadFixture(t, "windows/rules-allow-all.json")),
		netSecurityNamespace + "|" + appFilterQuery:     string(platformtest.ReadFixture(t, "windows/appfilters.json")),
		netSecurityNamespace + "|" + portFilterQuery:    string(platformtest.ReadFixture(t, "windows/portfilters.json")),
		netSecurityNamespace + "|" + addressFilterQuery: string(platformtest.ReadFixture(t, "windows/addressfilters.json")),
	}}
	res, err := New().Collect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sources) != 5 || !strings.Contains(res.Sources[0].Excerpt, `"Name":"Public"`) {
		t.Fatalf("sources %+v", res.Sources)
	}
	// A filter class's excerpt holds the rows of the rules still in
	// question, not the whole class.
	ports := res.Sources[3].Excerpt
	if !strings.Contains(ports, "Allow All Inbound") && !strings.Contains(ports, "{0E4B8C1D-6A2F-4B7E-9D3C-8F1A5E2B7C64}") || strings.Contains(ports, "CoreNet-DHCP-In") {
		t.Errorf("port filter excerpt %s", ports)
	}
}

func TestCollectWindowsProfileErrors(t *testing.T) {
	key := netSecurityNamespace + "|" + profileQuery
	host := func(rows string) platformtest.Replay {
		h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: map[string]string{
			netSecurityNamespace + "|" + ruleQuery: `[]`,
		}}
		if rows != "" {
			h.WMIResults[key] = rows
		}
		return h
	}

	// Group Policy switches the Domain profile off and allows inbound on
	// Private, whatever the local store says.
	gp := host(string(platformtest.ReadFixture(t, "windows/profiles-all-on-block.json")))
	gp.RegistryValues = map[string]platform.RegistryValue{
		gpPolicyKey + "DomainProfile|EnableFirewall":         {Type: "DWORD", Int: 0},
		gpPolicyKey + "StandardProfile|DefaultInboundAction": {Type: "DWORD", Int: 0},
	}
	res, err := New().Collect(context.Background(), gp)
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Payload.(Payload); p.Enabled || p.InboundDefaultDeny || p.Verdict != VerdictOpen || p.Backends[0].Active || p.Backends[1].InboundDefaultDeny || !p.Backends[2].InboundDefaultDeny {
		t.Errorf("Group Policy not applied: %+v", p)
	}
	if len(res.Sources) != 4 {
		t.Errorf("sources %+v; want the WMI profile rows, the two policy values and the rule query", res.Sources)
	}

	// Two profiles: partial payload, never deny, and an error.
	res, err = New().Collect(context.Background(), host(string(platformtest.ReadFixture(t, "windows/profiles-missing-domain.json"))))
	if p := res.Payload.(Payload); err == nil || !strings.Contains(err.Error(), "Domain") || p.Enabled || p.Verdict != VerdictUnknown {
		t.Errorf("missing profile: %+v %v", res, err)
	}
	for name, rows := range map[string]string{"no rows": `[]`, "garbage": `[{"Name": 1}]`, "truncated": `[{"Name": "Domain"`} {
		if _, err := New().Collect(context.Background(), host(rows)); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
	res, err = New().Collect(context.Background(), host(""))
	if !errors.Is(err, fs.ErrNotExist) || res.Payload != nil || res.Sources[0].Error == "" {
		t.Errorf("class missing: %+v %v", res, err)
	}
}
