package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// The Windows Defender Firewall profiles, from the NetSecurity WMI provider.
//
// Without a PolicyStore context, MSFT_NetFirewallProfile returns the local
// (persistent) store. Settings pushed by Group Policy live in their own
// store and win; the WMI door cannot select it, so the policy values are
// read from the registry (gpPolicyKey) and override the local ones.
const (
	netSecurityNamespace = `root\StandardCimv2`
	profileQuery         = "SELECT Name, Enabled, DefaultInboundAction, DefaultOutboundAction FROM MSFT_NetFirewallProfile"
)

// firewallProfile is one MSFT_NetFirewallProfile row. Enabled is a
// GpoBoolean (0 False, 1 True, 2 NotConfigured); the actions are
// 0 NotConfigured, 2 Allow, 4 Block.
type firewallProfile struct {
	Name                  string
	Enabled               uint16
	DefaultInboundAction  uint16
	DefaultOutboundAction uint16
}

var windowsProfiles = []string{"Domain", "Private", "Public"}

// Group Policy firewall settings: one key per profile (the Private
// profile's is StandardProfile); EnableFirewall 0/1, DefaultInboundAction
// 0 allow / 1 block.
const gpPolicyKey = `SOFTWARE\Policies\Microsoft\WindowsFirewall\`

var gpProfileKeys = map[string]string{"Domain": "DomainProfile", "Private": "StandardProfile", "Public": "PublicProfile"}

// applyGroupPolicy overrides rows with the Group Policy values that are set,
// and returns a source for each.
func applyGroupPolicy(host platform.Host, rows []firewallProfile) []collectors.Source {
	var srcs []collectors.Source
	for i := range rows {
		sub, ok := gpProfileKeys[titleCase(rows[i].Name)]
		if !ok {
			continue
		}
		key := gpPolicyKey + sub
		for _, name := range []string{"EnableFirewall", "DefaultInboundAction"} {
			v, err := host.Registry(key, name)
			if err != nil || v.Type != "DWORD" {
				continue // not set by policy: the local store decides
			}
			srcs = append(srcs, collectors.Source{Kind: "registry", Ref: `HKLM\` + key + `\` + name,
				Excerpt: fmt.Sprintf("DWORD %d (Group Policy overrides the local setting)", v.Int)})
			if name == "EnableFirewall" {
				rows[i].Enabled = uint16(min(v.Int, 1)) // 0 False, 1 True
			} else if rows[i].DefaultInboundAction = 2; v.Int == 1 { // 0 allow, 1 block
				rows[i].DefaultInboundAction = 4
			}
		}
	}
	return srcs
}

func titleCase(s string) string {
	for _, n := range windowsProfiles {
		if strings.EqualFold(n, s) {
			return n
		}
	}
	return s
}

// parseFirewallProfiles turns the profile rows into one backend per
// profile, in Domain, Private, Public order, and the payload. The host
// firewall counts as enabled only when all three profiles are: the profile
// in force depends on the network the laptop joins. Inbound traffic is
// denied by default when every profile is on and blocks unmatched inbound
// traffic. NotConfigured means the Windows default: enabled, inbound block.
// Missing profiles are returned by name.
func parseFirewallProfiles(rows []firewallProfile) (Payload, []string) {
	p := Payload{Backends: []Backend{}}
	byName := map[string]firewallProfile{}
	for _, r := range rows {
		byName[strings.ToLower(r.Name)] = r
	}
	var missing []string
	p.Enabled, p.InboundDefaultDeny = true, true
	for _, name := range windowsProfiles {
		r, ok := byName[strings.ToLower(name)]
		if !ok {
			missing = append(missing, name)
			p.Enabled, p.InboundDefaultDeny = false, false
			continue
		}
		b := Backend{Name: "windows:" + name}
		b.Active = r.Enabled == 1 || r.Enabled == 2
		deny := r.DefaultInboundAction == 4 || r.DefaultInboundAction == 0
		b.InboundDefaultDeny = b.Active && deny
		b.Detail = fmt.Sprintf("Enabled %d (%s), DefaultInboundAction %d (%s), DefaultOutboundAction %d (%s)",
			r.Enabled, gpoBoolean(r.Enabled), r.DefaultInboundAction, fwAction(r.DefaultInboundAction),
			r.DefaultOutboundAction, fwAction(r.DefaultOutboundAction))
		p.Backends = append(p.Backends, b)
		if !b.Active || !b.InboundDefaultDeny {
			if p.Enabled && p.InboundDefaultDeny {
				p.DecidedBy = b.Name // the first profile that falls short
			}
		}
		p.Enabled = p.Enabled && b.Active
		p.InboundDefaultDeny = p.InboundDefaultDeny && b.InboundDefaultDeny
	}
	if p.DecidedBy == "" && len(p.Backends) > 0 && len(missing) == 0 {
		p.DecidedBy = p.Backends[0].Name
	}
	return p, missing
}

func gpoBoolean(v uint16) string {
	switch v {
	case 0:
		return "False"
	case 1:
		return "True"
	case 2:
		return "NotConfigured: Windows default True"
	}
	return "undocumented"
}

func fwAction(v uint16) string {
	switch v {
	case 0:
		return "NotConfigured"
	case 2:
		return "Allow"
	case 4:
		return "Block"
	}
	return "undocumented"
}

// collectWindows reads the firewall profiles (live or a replayed
// snapshot). It has no build tag: parsers and collection are tested on every
// OS.
func collectWindows(ctx context.Context, host platform.Host) (collectors.Result, error) {
	var rows []firewallProfile
	err := host.WMI(ctx, netSecurityNamespace, profileQuery, &rows)
	src := collectors.Source{Kind: "wmi", Ref: netSecurityNamespace + ": " + profileQuery}
	if err != nil {
		src.Error = err.Error()
		return collectors.Result{Sources: []collectors.Source{src}}, fmt.Errorf("read MSFT_NetFirewallProfile: %w", err)
	}
	b, _ := json.Marshal(rows)
	src.Excerpt = collectors.Excerpt(b)
	res := collectors.Result{Sources: []collectors.Source{src}}
	if len(rows) == 0 {
		return res, fmt.Errorf("MSFT_NetFirewallProfile returned no profiles")
	}
	res.Sources = append(res.Sources, applyGroupPolicy(host, rows)...)
	p, missing := parseFirewallProfiles(rows)
	res.Payload = p
	if len(missing) > 0 {
		return res, fmt.Errorf("firewall profiles not reported: %s", strings.Join(missing, ", "))
	}
	return res, nil
}
