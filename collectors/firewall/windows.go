package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
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
	p.Verdict, p.Reason = profileVerdict(rows, missing)
	return p, missing
}

// profileVerdict is what the profiles alone say: "open" when a profile is
// off or does not block unsolicited inbound traffic by default, "unknown"
// when a profile is not reported, else "deny" (the inbound rules are
// still to be read: see ruleVerdict).
func profileVerdict(rows []firewallProfile, missing []string) (verdict, reason string) {
	byName := map[string]firewallProfile{}
	for _, r := range rows {
		byName[strings.ToLower(r.Name)] = r
	}
	var off, allow []string
	for _, name := range windowsProfiles {
		r, ok := byName[strings.ToLower(name)]
		switch {
		case !ok:
		case r.Enabled != 1 && r.Enabled != 2:
			off = append(off, name)
		case r.DefaultInboundAction != 4 && r.DefaultInboundAction != 0:
			allow = append(allow, fmt.Sprintf("the %s profile does not block inbound connections by default (DefaultInboundAction %d %s)",
				name, r.DefaultInboundAction, fwAction(r.DefaultInboundAction)))
		}
	}
	var why []string
	if len(off) > 0 {
		why = append(why, "firewall off for the "+profileList(off))
	}
	why = append(why, allow...)
	switch {
	case len(why) > 0:
		return VerdictOpen, strings.Join(why, "; ")
	case len(missing) > 0:
		return VerdictUnknown, "firewall state not reported for the " + profileList(missing)
	}
	return VerdictDeny, "all profiles on with inbound default block"
}

// profileList: "Public profile", "Domain and Public profiles".
func profileList(names []string) string {
	if len(names) == 1 {
		return names[0] + " profile"
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " profiles"
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

// collectWindows reads the firewall profiles and the inbound rules (live
// or a replayed snapshot). It has no build tag: parsers and collection are
// tested on every OS.
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
	open, srcs, rerr := readOpenRules(ctx, host)
	res.Sources = append(res.Sources, srcs...)
	ruleVerdict(&p, open, rerr)
	res.Payload = p
	if len(missing) > 0 {
		return res, fmt.Errorf("firewall profiles not reported: %s", strings.Join(missing, ", "))
	}
	return res, nil
}

// The inbound rules. Every profile blocking unsolicited inbound traffic by
// default proves nothing if an allow rule lets every port in: such a rule
// makes the verdict "open". A rule counts when it is enabled, inbound,
// Allow (AllowBypass admits only IPsec-authenticated traffic and does not
// count), applies on every profile, and neither its program, its local
// port nor its remote address is restricted. Anything less (some ports,
// some addresses, one program or app package, one or two profiles, a
// protocol without ports such as ICMP) does not count.
//
// A host has hundreds to thousands of rules and four times as many filter
// objects, so the reading is bounded: the rule query asks WMI only for
// enabled inbound Allow rules, and the filter classes, whose array
// properties WQL cannot filter, are read one class at a time, each only
// while a candidate rule is left: program first (it rules out nearly
// every built-in rule), then port, then remote address. A filter is
// joined to its rule by InstanceID (one filter of each class per rule).
//
// Like the profile query, these read the local (persistent) store: rules
// pushed by Group Policy or MDM are not seen.
const (
	ruleQuery          = "SELECT InstanceID, DisplayName, Direction, Action, Enabled, Profiles FROM MSFT_NetFirewallRule WHERE Direction = 1 AND Enabled = 1 AND Action = 2"
	appFilterQuery     = "SELECT InstanceID, AppPath, Package FROM MSFT_NetApplicationFilter"
	portFilterQuery    = "SELECT InstanceID, Protocol, LocalPort FROM MSFT_NetProtocolPortFilter"
	addressFilterQuery = "SELECT InstanceID, RemoteAddress FROM MSFT_NetAddressFilter"
)

// firewallRule is one MSFT_NetFirewallRule row: Direction 1 inbound,
// 2 outbound; Action 2 Allow, 3 AllowBypass, 4 Block; Enabled 1 true,
// 2 false; Profiles a mask of Domain 1, Private 2, Public 4, 0 for any.
type firewallRule struct {
	InstanceID  string
	DisplayName string
	Direction   uint16
	Action      uint16
	Enabled     uint16
	Profiles    uint16
}

// appFilter is one MSFT_NetApplicationFilter row: the program (AppPath)
// and the app package SID (Package) a rule is limited to.
type appFilter struct {
	InstanceID string
	AppPath    string
	Package    string
}

// portFilter is one MSFT_NetProtocolPortFilter row. Protocol is TCP, UDP,
// ICMPv4, ICMPv6, Any or a number; LocalPort holds numbers, ranges or
// keywords (Any, RPC, RPC-EPMap, IPHTTPSIn, ...).
type portFilter struct {
	InstanceID string
	Protocol   string
	LocalPort  []string
}

// addressFilter is one MSFT_NetAddressFilter row. RemoteAddress holds
// addresses, subnets, ranges or keywords (Any, LocalSubnet, Internet, ...).
type addressFilter struct {
	InstanceID    string
	RemoteAddress []string
}

// isAny reports whether a filter value leaves its dimension unrestricted.
// Microsoft documents the keyword "Any"; the COM firewall API writes "*";
// an absent value is no restriction either. Deciding "any" on all three
// can only turn a pass into a fail, never the reverse.
func isAny(vals ...string) bool {
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v != "" && v != "*" && !strings.EqualFold(v, "any") {
			return false
		}
	}
	return true
}

// allProfiles: Profiles 0 is Any; otherwise Domain, Private and Public
// must all be set.
func allProfiles(mask uint16) bool { return mask == 0 || mask&7 == 7 }

// candidateRules keeps the rules that could open every port: enabled,
// inbound, Allow, on all profiles. The WHERE clause already asks for the
// first three; they are checked again so a provider that ignores it
// cannot add rules that do not belong.
func candidateRules(rows []firewallRule) []firewallRule {
	var out []firewallRule
	for _, r := range rows {
		if r.Direction == 1 && r.Enabled == 1 && r.Action == 2 && allProfiles(r.Profiles) {
			out = append(out, r)
		}
	}
	return out
}

// keep returns the rules whose filter row is unrestricted; a rule without a
// row is kept (no filter seen, no restriction seen).
func keep[F any](rules []firewallRule, rows []F, id func(F) string, unrestricted func(F) bool) []firewallRule {
	byID := make(map[string]F, len(rows))
	for _, f := range rows {
		byID[id(f)] = f
	}
	var out []firewallRule
	for _, r := range rules {
		if f, ok := byID[r.InstanceID]; !ok || unrestricted(f) {
			out = append(out, r)
		}
	}
	return out
}

func anyProgram(f appFilter) bool { return isAny(f.AppPath) && isAny(f.Package) }

// anyPort: every local port of a protocol that has ports, as "any" or as
// numbers and ranges that cover 1-65535. ICMP and the other protocols
// without ports open no port whatever LocalPort says.
func anyPort(f portFilter) bool {
	switch strings.ToUpper(strings.TrimSpace(f.Protocol)) {
	case "", "*", "ANY", "256", "TCP", "6", "UDP", "17":
		return isAny(f.LocalPort...) || coversAllPorts(f.LocalPort)
	}
	return false
}

// coversAllPorts reports whether numbers and ranges ("80", "1-65535")
// cover every port from 1 to 65535; a keyword (RPC, Teredo, ...) is not
// a port.
func coversAllPorts(vals []string) bool {
	var covered [65536]bool
	for _, v := range vals {
		lo, hi, ok := strings.Cut(strings.TrimSpace(v), "-")
		if !ok {
			hi = lo
		}
		a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
		b, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		for p := a; p <= b; p++ {
			covered[p] = true
		}
	}
	for p := 1; p <= 65535; p++ {
		if !covered[p] {
			return false
		}
	}
	return true
}

// anyAddress: "any", or an entry that is a whole address family
// (0.0.0.0/0, ::/0, 0.0.0.0/0.0.0.0, 0.0.0.0-255.255.255.255): every
// IPv4 address is "any address" as far as exposure goes. Keywords such as
// LocalSubnet or Internet restrict.
func anyAddress(f addressFilter) bool {
	if isAny(f.RemoteAddress...) {
		return true
	}
	for _, v := range f.RemoteAddress {
		if wholeFamily(strings.TrimSpace(v)) {
			return true
		}
	}
	return false
}

func wholeFamily(v string) bool {
	if lo, hi, ok := strings.Cut(v, "-"); ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		b, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		return err1 == nil && err2 == nil && a.Is4() == b.Is4() && a.IsUnspecified() && isMaxAddr(b)
	}
	addr, mask, ok := strings.Cut(v, "/")
	if !ok {
		return false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.IsUnspecified() {
		return false
	}
	if m, err := netip.ParseAddr(mask); err == nil {
		return m.IsUnspecified() // 0.0.0.0/0.0.0.0
	}
	return mask == "0"
}

func isMaxAddr(a netip.Addr) bool {
	for _, b := range a.AsSlice() {
		if b != 0xff {
			return false
		}
	}
	return true
}

// readOpenRules returns the display names of the rules that open every
// port, the sources read, and an error when a query failed (then the
// rules are unknown, not absent).
func readOpenRules(ctx context.Context, host platform.Host) ([]string, []collectors.Source, error) {
	var srcs []collectors.Source
	// query runs q into dst and records its source; excerpt sets the
	// last source's excerpt once the rows that decided are known.
	query := func(q string, dst any) error {
		src := collectors.Source{Kind: "wmi", Ref: netSecurityNamespace + ": " + q}
		err := host.WMI(ctx, netSecurityNamespace, q, dst)
		if err != nil {
			src.Error = err.Error()
		}
		srcs = append(srcs, src)
		return err
	}
	excerpt := func(rows any) {
		b, _ := json.Marshal(rows)
		srcs[len(srcs)-1].Excerpt = collectors.Excerpt(b)
	}

	var rules []firewallRule
	if err := query(ruleQuery, &rules); err != nil {
		return nil, srcs, fmt.Errorf("MSFT_NetFirewallRule: %w", err)
	}
	cands := candidateRules(rules)
	excerpt(cands)
	want := func() map[string]bool {
		m := map[string]bool{}
		for _, r := range cands {
			m[r.InstanceID] = true
		}
		return m
	}

	if len(cands) > 0 {
		var rows []appFilter
		id := func(f appFilter) string { return f.InstanceID }
		if err := query(appFilterQuery, &rows); err != nil {
			return nil, srcs, fmt.Errorf("MSFT_NetApplicationFilter: %w", err)
		}
		excerpt(filterRows(rows, want(), id))
		cands = keep(cands, rows, id, anyProgram)
	}
	if len(cands) > 0 {
		var rows []portFilter
		id := func(f portFilter) string { return f.InstanceID }
		if err := query(portFilterQuery, &rows); err != nil {
			return nil, srcs, fmt.Errorf("MSFT_NetProtocolPortFilter: %w", err)
		}
		excerpt(filterRows(rows, want(), id))
		cands = keep(cands, rows, id, anyPort)
	}
	if len(cands) > 0 {
		var rows []addressFilter
		id := func(f addressFilter) string { return f.InstanceID }
		if err := query(addressFilterQuery, &rows); err != nil {
			return nil, srcs, fmt.Errorf("MSFT_NetAddressFilter: %w", err)
		}
		excerpt(filterRows(rows, want(), id))
		cands = keep(cands, rows, id, anyAddress)
	}
	var open []string
	for _, r := range cands {
		name := r.DisplayName
		if name == "" {
			name = r.InstanceID
		}
		open = append(open, name)
	}
	return open, srcs, nil
}

// filterRows keeps the filter rows of the candidate rules: the excerpt of
// a filter class shows what decided, not the whole class.
func filterRows[F any](rows []F, want map[string]bool, id func(F) string) []F {
	out := []F{}
	for _, f := range rows {
		if want[id(f)] {
			out = append(out, f)
		}
	}
	return out
}

// ruleVerdict folds the rules into the profiles' verdict: an open rule
// makes it "open"; unreadable rules leave "deny" unproven ("unknown"); a
// profile that is off stays "open" whatever the rules.
func ruleVerdict(p *Payload, open []string, err error) {
	if len(open) > 0 {
		p.OpenRules = open
		why := fmt.Sprintf("inbound rule %q allows any port from any address for any program on all profiles", open[0])
		if len(open) > 1 {
			why += fmt.Sprintf(" (and %d more: see open_rules)", len(open)-1)
		}
		if p.Verdict == VerdictOpen {
			p.Reason += "; " + why
		} else {
			p.Verdict, p.Reason, p.DecidedBy = VerdictOpen, why, "windows:rules"
		}
	}
	switch {
	case p.Verdict != VerdictDeny:
	case err != nil:
		p.Verdict, p.Reason = VerdictUnknown, "cannot read the inbound firewall rules: "+err.Error()
	default:
		p.Reason += "; no inbound rule opens every port"
	}
	p.InboundDefaultDeny = p.Verdict == VerdictDeny
}
