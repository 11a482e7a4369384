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
		file          string
		enabled, deny bool
		decidedBy     string
		active        []bool // Domain, Private, Public
		missing       int
	}{
		{file: "profiles-all-on-block.json", enabled: true, deny: true, decidedBy: "windows:Domain", active: []bool{true, true, true}},
		{file: "profiles-notconfigured.json", enabled: true, deny: true, decidedBy: "windows:Domain", active: []bool{true, true, true}},
		{file: "profiles-all-off.json", decidedBy: "windows:Domain", active: []bool{false, false, false}},
		{file: "profiles-public-off.json", decidedBy: "windows:Public", active: []bool{true, true, false}},
		{file: "profiles-private-allow.json", enabled: true, decidedBy: "windows:Private", active: []bool{true, true, true}},
		{file: "profiles-missing-domain.json", active: []bool{true, true}, missing: 1},
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

func TestCollectWindows(t *testing.T) {
	key := netSecurityNamespace + "|" + profileQuery
	host := func(rows string) platformtest.Replay {
		h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: map[string]string{}}
		if rows != "" {
			h.WMIResults[key] = rows
		}
		return h
	}
	res, err := New().Collect(context.Background(), host(string(platformtest.ReadFixture(t, "windows/profiles-public-off.json"))))
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Enabled || p.InboundDefaultDeny || len(p.Backends) != 3 || p.Backends[2].Name != "windows:Public" || p.Backends[2].Active {
		t.Errorf("payload %+v", p)
	}
	if len(res.Sources) != 1 || res.Sources[0].Kind != "wmi" || !strings.Contains(res.Sources[0].Excerpt, `"Name":"Public"`) {
		t.Errorf("sources %+v", res.Sources)
	}

	// Group Policy switches the Domain profile off and allows inbound on
	// Private, whatever the local store says.
	gp := host(string(platformtest.ReadFixture(t, "windows/profiles-all-on-block.json")))
	gp.RegistryValues = map[string]platform.RegistryValue{
		gpPolicyKey + "DomainProfile|EnableFirewall":         {Type: "DWORD", Int: 0},
		gpPolicyKey + "StandardProfile|DefaultInboundAction": {Type: "DWORD", Int: 0},
	}
	res, err = New().Collect(context.Background(), gp)
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Payload.(Payload); p.Enabled || p.InboundDefaultDeny || p.Backends[0].Active || p.Backends[1].InboundDefaultDeny || !p.Backends[2].InboundDefaultDeny {
		t.Errorf("Group Policy not applied: %+v", p)
	}
	if len(res.Sources) != 3 {
		t.Errorf("sources %+v; want the WMI rows and the two policy values", res.Sources)
	}

	// Two profiles: partial payload and an error.
	res, err = New().Collect(context.Background(), host(string(platformtest.ReadFixture(t, "windows/profiles-missing-domain.json"))))
	if err == nil || !strings.Contains(err.Error(), "Domain") || res.Payload.(Payload).Enabled {
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
