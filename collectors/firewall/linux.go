package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// view is one set of hooks the kernel runs: the nf_tables ruleset (nft's
// tables, with the iptables-nft view standing in for tables that hold
// iptables compat matches), or the iptables-legacy tables of one family.
type view struct {
	backend string
	bcs     []*baseChain
	lit     *literals
}

// collectLinux evaluates the rulesets the kernel has loaded: nftables
// (`nft -j list ruleset`), the iptables-nft view of tables that hold
// iptables compat matches, and iptables-legacy (separate hooks: a packet
// must pass both). ufw and firewalld configuration is reported as context
// and never decides: a config file saying "enabled" is not evidence of
// loaded rules. It has no build tag so it is tested on every OS.
func collectLinux(ctx context.Context, host platform.Host) (collectors.Result, error) {
	r := &reader{host: host, missing: map[string]bool{}}
	p := Payload{Backends: []Backend{}}
	var readErrs []string
	failed := func(what string, res platform.Result, err error) {
		msg := what
		switch {
		case err != nil:
			msg += ": " + err.Error()
		case res.ExitCode != 0:
			msg += fmt.Sprintf(": exit %d: %s", res.ExitCode, firstLine(res.Stderr))
		}
		readErrs = append(readErrs, msg)
	}

	var nrs *nftRuleset
	if res, ok := r.run(ctx, "nft", "-j", "list", "ruleset"); ok {
		rs, err := parseNft(res.Stdout)
		if err != nil {
			// nft 1.0.6 can cut its JSON short on a dormant table: read
			// the ruleset table by table instead.
			r.sources[len(r.sources)-1].Error = err.Error()
			rs, err = r.nftByTable(ctx)
			if err != nil {
				failed("nft -j list ruleset", res, err)
			}
		}
		if err == nil {
			nrs = rs
			// nft 1.0.6 prints a table's flags unreadably in JSON: the text
			// listing says whether the table is dormant (it filters nothing).
			for _, key := range rs.undecidedFlags {
				fam, name, _ := strings.Cut(key, " ")
				if tr, ok := r.run(ctx, "nft", "list", "table", fam, name); ok {
					rs.setDormant(key, dormantFromText(tr.Stdout))
				} else {
					failed("nft list table "+key, tr, nil)
				}
			}
		}
	} else if !r.missing["nft"] {
		failed("nft -j list ruleset", res, nil)
	}

	iptNFT := map[string]*iptRuleset{}
	legacy := map[string]*iptRuleset{}
	for _, fam := range []string{"ip", "ip6"} {
		prefix := map[string]string{"ip": "iptables", "ip6": "ip6tables"}[fam]
		for _, cmd := range []string{prefix + "-nft-save", prefix + "-legacy-save", prefix + "-save"} {
			if cmd == prefix+"-save" && (!r.missing[prefix+"-nft-save"] || !r.missing[prefix+"-legacy-save"]) {
				continue // the variants were read by name
			}
			res, ok := r.run(ctx, cmd)
			if !ok {
				if !r.missing[cmd] {
					failed(cmd, res, nil)
				}
				continue
			}
			rs, err := parseIptables(res.Stdout, fam)
			if err != nil {
				r.sources[len(r.sources)-1].Error = err.Error()
				failed(cmd, res, err)
				continue
			}
			if rs.nft {
				iptNFT[fam] = rs
			} else {
				legacy[fam] = rs
			}
		}
	}

	var views []view
	if nrs != nil {
		nv := view{backend: "nftables", lit: &nrs.lit}
		for _, fam := range []string{"ip", "ip6"} {
			ipt := iptNFT[fam]
			if ipt == nil {
				continue
			}
			for name := range ipt.tables {
				key := fam + " " + name
				if t := nrs.tables[key]; t == nil || !t.xt || t.dormant || ipt.partial[name] {
					continue
				}
				nrs.dropTable(key)
				for _, bc := range ipt.base {
					if strings.Contains(bc.loc, " table "+name+" ") {
						bc.source = "iptables-nft"
						nv.bcs = append(nv.bcs, bc)
					}
				}
				nrs.lit.merge(&ipt.lit)
			}
		}
		nv.bcs = append(nv.bcs, nrs.base...)
		hookOrder(nv.bcs)
		views = append(views, nv)
	} else {
		// No nft to read: the iptables-nft view is the nf_tables ruleset.
		for _, fam := range []string{"ip", "ip6"} {
			if ipt := iptNFT[fam]; ipt != nil {
				views = append(views, view{backend: map[string]string{"ip": "iptables-nft", "ip6": "ip6tables-nft"}[fam], bcs: ipt.base, lit: &ipt.lit})
			}
		}
	}
	for _, fam := range []string{"ip", "ip6"} {
		if l := legacy[fam]; l != nil {
			views = append(views, view{backend: map[string]string{"ip": "iptables-legacy", "ip6": "ip6tables-legacy"}[fam], bcs: l.base, lit: &l.lit})
		}
	}

	var managers []string
	var managed []Backend
	if b, ok := r.ufw(); ok {
		managers, managed = append(managers, "ufw "+b.Detail), append(managed, b)
	}
	if b, ok := r.firewalld(ctx); ok {
		managers, managed = append(managers, "firewalld "+b.Detail), append(managed, b)
	}

	p = evaluateViews(views, ipv6Present(host), hostNet{
		ifaces: func(fam string) []string { return inboundIfaces(host, fam) },
		addrs:  func(fam string) []netip.Addr { return localAddrs(host, fam) },
	})
	p.Backends = append(p.Backends, managed...)
	switch {
	case len(views) == 0:
		why := "no nft or iptables tool is installed"
		if len(readErrs) > 0 {
			why = strings.Join(readErrs, "; ")
		}
		p.Verdict, p.Reason = VerdictUnknown, "cannot read the loaded ruleset: "+why
		if len(managers) > 0 {
			p.Reason += " (configuration is context only and does not decide: " + strings.Join(managers, "; ") + ")"
		}
	case len(readErrs) > 0 && p.Verdict == VerdictDeny:
		// What could not be read might accept: the deny is not proven.
		p.Verdict = VerdictUnknown
		p.Reason = "part of the loaded ruleset could not be read (" + strings.Join(readErrs, "; ") + "); what was read: " + p.Reason
	}
	p.InboundDefaultDeny = p.Verdict == VerdictDeny
	return collectors.Result{Payload: p, Sources: r.sources}, nil
}

// nftByTable lists the tables, then each one as text (to see whether it is
// dormant) and, unless it is, as JSON.
func (r *reader) nftByTable(ctx context.Context) (*nftRuleset, error) {
	list, ok := r.run(ctx, "nft", "list", "tables")
	if !ok {
		return nil, fmt.Errorf("nft list tables: exit %d: %s", list.ExitCode, firstLine(list.Stderr))
	}
	get := func(argv ...string) ([]byte, error) {
		res, ok := r.run(ctx, argv...)
		if !ok {
			return nil, fmt.Errorf("%s: exit %d: %s", strings.Join(argv, " "), res.ExitCode, firstLine(res.Stderr))
		}
		return res.Stdout, nil
	}
	return parseNftTables(list.Stdout,
		func(f, n string) ([]byte, error) { return get("nft", "list", "table", f, n) },
		func(f, n string) ([]byte, error) { return get("nft", "-j", "list", "table", f, n) })
}

// evaluateViews sends the probes through every view's base chains (each
// view on its own for its backend's line, then all together for the
// verdict).
func evaluateViews(views []view, v6 bool, hn hostNet) Payload {
	p := Payload{Backends: []Backend{}}
	var lit literals
	var all []*baseChain
	for _, v := range views {
		lit.merge(v.lit)
		all = append(all, v.bcs...)
	}
	hookOrder(all)
	families := []string{"ip"}
	if v6 {
		families = append(families, "ip6")
	}
	// The probe arrives on each interface the host has (but loopback) that
	// a rule names, and on one it does not name (all of those meet every
	// rule the same way); when the host's interfaces cannot be listed, on
	// an interface no rule names.
	ifaces := map[string][]string{}
	for _, fam := range families {
		unnamed := false
		for _, n := range hn.ifaces(fam) {
			if lit.named(n) || !unnamed {
				unnamed = unnamed || !lit.named(n)
				ifaces[fam] = append(ifaces[fam], n)
			}
		}
		if len(ifaces[fam]) == 0 {
			ifaces[fam] = []string{lit.freeIface()}
		}
	}
	// The destinations: the host's own addresses, at most maxDaddrs of
	// them; a deny is only proven for all of them.
	addrs := map[string][]netip.Addr{}
	truncated := map[string]bool{}
	for _, fam := range families {
		if hn.addrs != nil {
			addrs[fam] = hn.addrs(fam)
		}
		if len(addrs[fam]) > maxDaddrs {
			addrs[fam], truncated[fam] = addrs[fam][:maxDaddrs], true
		}
	}
	// The verdict first, over every view together: it gets the work
	// budget before the backends' own lines.
	budget := maxWork
	combined := map[string]Family{}
	p.Verdict = VerdictDeny
	for _, fam := range families {
		f := familyVerdict(all, fam, ifaces[fam], addrs[fam], lit, &budget)
		if f.Verdict == VerdictDeny && truncated[fam] {
			f.Verdict = VerdictUnknown
			f.Reason = fmt.Sprintf("%s: the host has more than %d addresses; the first %d deny: %s", familyName(fam), maxDaddrs, maxDaddrs, f.Reason)
		}
		combined[fam] = f
		p.Families = append(p.Families, f)
		switch {
		case f.Verdict == VerdictOpen:
			p.Verdict = VerdictOpen
		case f.Verdict == VerdictUnknown && p.Verdict == VerdictDeny:
			p.Verdict = VerdictUnknown
		}
	}
	for _, v := range views {
		b := Backend{Name: v.backend}
		var details []string
		for _, bc := range v.bcs {
			rules := len(bc.chains[bc.chain].rules)
			b.Active = b.Active || rules > 0 || bc.policy == "drop"
			details = append(details, fmt.Sprintf("%s (hook %s priority %d, policy %s, %d rules)", bc.loc, bc.hook, bc.prio, bc.policy, rules))
		}
		if len(details) == 0 {
			details = append(details, "no prerouting or input chain loaded")
		}
		// A backend's own line: does it alone deny the families it hooks?
		// With one backend that is the verdict already computed.
		deny := b.Active
		for _, fam := range families {
			covers := false
			for _, bc := range v.bcs {
				covers = covers || bc.family == fam || bc.family == "inet"
			}
			if !deny || !covers {
				continue
			}
			f := combined[fam]
			if len(views) > 1 {
				f = familyVerdict(v.bcs, fam, ifaces[fam], addrs[fam], lit, &budget)
			}
			deny = f.Verdict == VerdictDeny
		}
		b.InboundDefaultDeny = deny
		b.Detail = strings.Join(details, "; ")
		p.Backends = append(p.Backends, b)
		if b.Active {
			p.Enabled = true
			p.DecidedBy = strings.TrimPrefix(p.DecidedBy+"+"+b.Name, "+")
		}
	}
	if p.DecidedBy == "" {
		p.DecidedBy = "kernel ruleset"
	}
	var reasons []string
	for _, f := range p.Families {
		if f.Verdict == p.Verdict {
			reasons = append(reasons, f.Reason)
		}
	}
	p.Reason = strings.Join(reasons, "; ")
	if !v6 {
		p.Reason += " (IPv6 is off on this host)"
	}
	p.InboundDefaultDeny = p.Verdict == VerdictDeny
	return p
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// hostNet is what the probes need to know of the host's network.
type hostNet struct {
	// ifaces names the interfaces a packet of a family can arrive on; none
	// known: an interface no rule names stands for them.
	ifaces func(fam string) []string
	// addrs lists the host's own addresses of a family, the destinations
	// of an inbound connection; none known (or nil): an address no rule
	// lists stands for them.
	addrs func(fam string) []netip.Addr
}

// maxDaddrs bounds the host addresses probed; a host with more cannot be
// shown to deny.
const maxDaddrs = 32

// localAddrs lists the host's addresses of a family but loopback and
// link-local (at most maxDaddrs+1, so the caller sees there were more):
// /proc/net/fib_trie's local (/32 host LOCAL) entries for IPv4,
// /proc/net/if_inet6 for IPv6. Both are readable without root, per network
// namespace. Public ones first.
func localAddrs(host platform.Host, fam string) []netip.Addr {
	var out []netip.Addr
	add := func(a netip.Addr) {
		// A link-local address is reachable only from the local link, not
		// from the non-local sources the probe stands for.
		if a.IsValid() && !a.IsLoopback() && !a.IsUnspecified() && !a.IsLinkLocalUnicast() && !slices.Contains(out, a) && len(out) <= maxDaddrs {
			out = append(out, a)
		}
	}
	if fam == "ip" {
		b, err := host.ReadFile("/proc/net/fib_trie", 4<<20)
		if err != nil {
			return nil
		}
		last := ""
		for _, line := range strings.Split(string(b), "\n") {
			t := strings.TrimSpace(line)
			if rest, ok := strings.CutPrefix(t, "|-- "); ok {
				last = rest
				continue
			}
			if strings.HasPrefix(t, "/32 host LOCAL") {
				a, _ := netip.ParseAddr(last)
				add(a)
			}
		}
	} else {
		b, err := host.ReadFile("/proc/net/if_inet6", 1<<20)
		if err != nil {
			return nil
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 || len(f[0]) != 32 {
				continue
			}
			var raw [16]byte
			ok := true
			for i := 0; i < 16 && ok; i++ {
				v, err := strconv.ParseUint(f[0][2*i:2*i+2], 16, 8)
				raw[i], ok = byte(v), err == nil
			}
			if ok {
				add(netip.AddrFrom16(raw))
			}
		}
	}
	// Public addresses first (what the world connects to), then private.
	slices.SortStableFunc(out, func(a, b netip.Addr) int {
		switch {
		case a.IsPrivate() == b.IsPrivate():
			return 0
		case b.IsPrivate():
			return -1
		}
		return 1
	})
	return out
}

// inboundIfaces names the host's interfaces but loopback, from
// /proc/net/dev (readable without root; per network namespace), with the
// interfaces of default routes first. A packet from outside can only
// arrive on one of them: a rule that accepts everything on one of them
// opens the host, whatever its name.
func inboundIfaces(host platform.Host, fam string) []string {
	out := defaultRouteIfaces(host, fam)
	b, err := host.ReadFile("/proc/net/dev", 1<<20)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, _, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || name == "lo" || strings.Contains(name, "|") || slices.Contains(out, name) {
			continue
		}
		if len(out) >= 256 {
			break
		}
		out = append(out, name)
	}
	return out
}

// defaultRouteIfaces names the interfaces a default route of the family
// leaves through (/proc/net/route, /proc/net/ipv6_route).
func defaultRouteIfaces(host platform.Host, fam string) []string {
	var out []string
	add := func(n string) {
		if n != "lo" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if fam == "ip" {
		b, err := host.ReadFile("/proc/net/route", 1<<20)
		if err != nil {
			return nil
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 8 && f[1] == "00000000" && f[7] == "00000000" {
				add(f[0])
			}
		}
		return out
	}
	b, err := host.ReadFile("/proc/net/ipv6_route", 4<<20)
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 10 && f[0] == strings.Repeat("0", 32) && f[1] == "00" {
			add(f[9])
		}
	}
	return out
}
