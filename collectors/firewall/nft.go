package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// nftRuleset is what `nft -j list ruleset` says, ready to evaluate.
type nftRuleset struct {
	base []*baseChain
	// tables lists every table by "family name".
	tables map[string]*nftTable
	// undecidedFlags names tables whose flags the JSON printed unreadably
	// (nft 1.0.6 prints the release name there): whether they are dormant
	// must be read from the text listing.
	undecidedFlags []string
	// dormantTables were skipped: their text listing says flags dormant.
	dormantTables []string
	lit           literals
}

type nftTable struct {
	family, name string
	dormant      bool
	xt           bool // holds iptables-nft compat matches
	chains       map[string]*chain
	sets         map[string][]json.RawMessage // named sets and maps: their elements
	decoded      map[string][]any             // sets' elements, decoded on first use
	noted        map[string]bool              // sets whose literals were noted
	dynamic      map[string]bool              // sets that rules fill from the packet path
	base         []*baseChain
}

// Bounds on what a hostile or huge ruleset may cost.
const (
	maxNftObjects = 200000
	maxSetElems   = 1 << 20
)

// parseNft reads `nft -j list ruleset`. Only families ip, ip6 and inet are
// kept: the hooks a packet to this host passes are prerouting and input.
func parseNft(b []byte) (*nftRuleset, error) {
	objs, err := nftObjects(b)
	if err != nil {
		return nil, err
	}
	return buildNft(objs)
}

// nftObjects decodes one `nft -j list ...` document.
func nftObjects(b []byte) ([]map[string]json.RawMessage, error) {
	var doc struct {
		Nftables *[]map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse nft json: %w", err)
	}
	if doc.Nftables == nil {
		return nil, errors.New(`parse nft json: no "nftables" key`)
	}
	if len(*doc.Nftables) > maxNftObjects {
		return nil, fmt.Errorf("parse nft json: more than %d objects", maxNftObjects)
	}
	return *doc.Nftables, nil
}

// parseNftTables reads the ruleset table by table: the fallback when nft
// cannot print the whole ruleset as JSON (nft 1.0.6 prints a dormant
// table's flags from freed memory, which can cut the document short).
// list is `nft list tables`; text(f, n) and js(f, n) list one table as text
// and as JSON. A dormant table is skipped on its text listing alone.
func parseNftTables(list []byte, text, js func(family, name string) ([]byte, error)) (*nftRuleset, error) {
	var objs []map[string]json.RawMessage
	var dormant []string
	for _, line := range strings.Split(string(list), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "table" {
			continue
		}
		if !keptFamily(f[1]) {
			continue
		}
		t, err := text(f[1], f[2])
		if err != nil {
			return nil, err
		}
		if dormantFromText(t) {
			dormant = append(dormant, f[1]+" "+f[2])
			continue
		}
		b, err := js(f[1], f[2])
		if err != nil {
			return nil, err
		}
		o, err := nftObjects(b)
		if err != nil {
			return nil, fmt.Errorf("table %s %s: %w", f[1], f[2], err)
		}
		if objs = append(objs, o...); len(objs) > maxNftObjects {
			return nil, fmt.Errorf("parse nft json: more than %d objects", maxNftObjects)
		}
	}
	rs, err := buildNft(objs)
	if err != nil {
		return nil, err
	}
	rs.dormantTables = dormant
	return rs, nil
}

// buildNft turns nft's JSON objects into base chains ready to evaluate.
func buildNft(objs []map[string]json.RawMessage) (*nftRuleset, error) {
	rs := &nftRuleset{tables: map[string]*nftTable{}}
	table := func(family, name string) *nftTable {
		k := family + " " + name
		t := rs.tables[k]
		if t == nil {
			t = &nftTable{family: family, name: name, chains: map[string]*chain{}, sets: map[string][]json.RawMessage{}}
			rs.tables[k] = t
		}
		return t
	}
	var rules []nftRule
	elems := 0
	for _, obj := range objs {
		switch {
		case obj["table"] != nil:
			var t struct {
				Family, Name string
				Flags        json.RawMessage
			}
			if err := json.Unmarshal(obj["table"], &t); err != nil {
				return nil, fmt.Errorf("parse nft table: %w", err)
			}
			if !keptFamily(t.Family) {
				continue
			}
			tb := table(t.Family, t.Name)
			if len(t.Flags) > 0 && string(t.Flags) != "null" {
				// nft 1.0.6 prints a table's flags from freed memory (the
				// table's name, the release name, or nothing), so a flags
				// value is never trusted: the text listing decides. Until
				// then a table that says dormant is taken at its word.
				for _, f := range stringsOf(t.Flags) {
					tb.dormant = tb.dormant || f == "dormant"
				}
				rs.undecidedFlags = append(rs.undecidedFlags, t.Family+" "+t.Name)
			}
		case obj["chain"] != nil:
			var c struct {
				Family, Table, Name, Hook, Policy, Type string
				Prio                                    json.RawMessage
			}
			if err := json.Unmarshal(obj["chain"], &c); err != nil {
				return nil, fmt.Errorf("parse nft chain: %w", err)
			}
			if !keptFamily(c.Family) {
				continue
			}
			t := table(c.Family, c.Table)
			if t.chains[c.Name] == nil {
				t.chains[c.Name] = &chain{name: c.Name}
			}
			if (c.Hook == "input" && c.Type == "filter") || (c.Hook == "prerouting" && (c.Type == "filter" || c.Type == "nat")) {
				prio, _ := strconv.Atoi(strings.TrimSpace(string(c.Prio)))
				if c.Policy == "" {
					c.Policy = "accept"
				}
				t.base = append(t.base, &baseChain{
					loc: fmt.Sprintf("table %s %s chain %s", c.Family, c.Table, c.Name), family: c.Family,
					hook: c.Hook, prio: prio, policy: c.Policy, chain: c.Name, chains: t.chains, source: "nftables"})
			}
		case obj["set"] != nil || obj["map"] != nil:
			raw := obj["set"]
			if raw == nil {
				raw = obj["map"]
			}
			var s struct {
				Family, Table, Name string
				Elem                []json.RawMessage
			}
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("parse nft set: %w", err)
			}
			if !keptFamily(s.Family) {
				continue
			}
			if elems += len(s.Elem); elems > maxSetElems {
				return nil, fmt.Errorf("parse nft json: sets hold more than %d elements", maxSetElems)
			}
			table(s.Family, s.Table).sets[s.Name] = s.Elem
		case obj["rule"] != nil:
			var r nftRule
			if err := json.Unmarshal(obj["rule"], &r); err != nil {
				return nil, fmt.Errorf("parse nft rule: %w", err)
			}
			if keptFamily(r.Family) {
				rules = append(rules, r)
			}
		}
	}
	// Rules follow their chains and sets in nft's output, but build them
	// once everything is known: a rule may name a set listed later.
	for _, r := range rules {
		t := table(r.Family, r.Table)
		c := t.chains[r.Chain]
		if c == nil {
			c = &chain{name: r.Chain}
			t.chains[r.Chain] = c
		}
		built := buildNftRule(t, r, &rs.lit)
		if built.xt {
			t.xt = true
		}
		c.rules = append(c.rules, built.rule)
	}
	for _, t := range rs.tables {
		if !t.dormant {
			rs.base = append(rs.base, t.base...)
		}
	}
	hookOrder(rs.base)
	return rs, nil
}

func keptFamily(f string) bool { return f == "ip" || f == "ip6" || f == "inet" }

// dormantFromText reads `nft list table FAMILY NAME`: a dormant table says
// "flags dormant" before its first chain.
func dormantFromText(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 1 && (f[0] == "chain" || f[0] == "set" || f[0] == "map") {
			return false
		}
		if len(f) >= 2 && f[0] == "flags" {
			for _, fl := range strings.Split(strings.Join(f[1:], ""), ",") {
				if fl == "dormant" {
					return true
				}
			}
		}
	}
	return false
}

// setDormant marks tables dormant after the text listing was read.
func (rs *nftRuleset) setDormant(key string, dormant bool) {
	t := rs.tables[key]
	if t == nil || t.dormant == dormant {
		return
	}
	t.dormant = dormant
	rs.base = rs.base[:0]
	for _, t := range rs.tables {
		if !t.dormant {
			rs.base = append(rs.base, t.base...)
		}
	}
	hookOrder(rs.base)
}

// dropTable removes a table's base chains (another view evaluates it).
func (rs *nftRuleset) dropTable(key string) {
	rs.setDormant(key, true)
}

type nftRule struct {
	Family, Table, Chain string
	Handle               json.Number
	Expr                 []map[string]json.RawMessage
}

type builtRule struct {
	rule rule
	xt   bool
}

// buildNftRule turns one rule's statements into matches and a verdict.
func buildNftRule(t *nftTable, r nftRule, lit *literals) builtRule {
	out := builtRule{rule: rule{loc: fmt.Sprintf("table %s %s chain %s handle %s", r.Family, r.Table, r.Chain, r.Handle)}}
	fam := r.Family
	for _, st := range r.Expr {
		if out.rule.v.kind != vNone {
			break // statements after a verdict never run
		}
		for k, raw := range st {
			switch k {
			case "match":
				out.rule.conds = append(out.rule.conds, nftMatch(t, fam, raw, lit))
			case "counter", "log", "ct helper", "ct timeout", "ct expectation", "dup", "last", "secmark", "flow":
				// no verdict and no condition on the probe
			case "mangle":
				// Setting a mark changes nothing a later rule here reads of
				// the probe; rewriting the packet (ip dscp set, th dport
				// set) changes what every later hook sees, and nft's
				// listing drops the protocol dependency it implies.
				var m struct{ Key map[string]json.RawMessage }
				_ = json.Unmarshal(raw, &m)
				if _, ok := m.Key["meta"]; ok {
					continue
				}
				if _, ok := m.Key["ct"]; ok {
					continue
				}
				out.rule.v = verdict{kind: vUnknown, desc: "packet rewrite " + compact(raw), rewrite: true}
			case "set", "map":
				// A dynamic set update: its statements (limit, ct count,
				// quota) decide whether the rule matches, and nft's listing
				// drops the protocol dependency of its key.
				out.rule.conds = append(out.rule.conds, cond{desc: "set update " + compact(raw), eval: func(*probe) tri { return maybe }})
				// The set it fills is no snapshot: packets change it (port
				// knocking, "recently seen" lists).
				var u struct{ Set string }
				if json.Unmarshal(raw, &u) == nil && strings.HasPrefix(u.Set, "@") {
					if t.dynamic == nil {
						t.dynamic = map[string]bool{}
					}
					t.dynamic[u.Set[1:]] = true
				}
			case "limit", "quota":
				// The sender chooses the rate: a limit or a quota matches
				// some packets and not others.
				out.rule.conds = append(out.rule.conds, cond{desc: k + " " + compact(raw), eval: func(*probe) tri { return either }})
			case "notrack":
				out.rule.v = verdict{kind: vUnknown, desc: "notrack (later rules see the packet untracked)", rewrite: true}
			case "accept":
				out.rule.v = verdict{kind: vAccept}
			case "drop":
				out.rule.v = verdict{kind: vDrop}
			case "reject":
				out.rule.v = verdict{kind: vDrop, desc: "reject"}
				if c, ok := rejectDependency(raw); ok {
					out.rule.conds = append(out.rule.conds, c)
				}
			case "return":
				out.rule.v = verdict{kind: vReturn}
			case "continue":
				// the next rule runs
			case "jump", "goto":
				var j struct{ Target string }
				_ = json.Unmarshal(raw, &j)
				kind := vJump
				if k == "goto" {
					kind = vGoto
				}
				out.rule.v = verdict{kind: kind, target: j.Target}
			case "vmap":
				out.rule.v = nftVmap(t, fam, raw, lit)
			case "xt":
				var x struct{ Type, Name string }
				_ = json.Unmarshal(raw, &x)
				out.xt = true
				if x.Type == "match" && x.Name == "comment" {
					continue
				}
				if x.Type == "target" {
					out.rule.v = verdict{kind: vUnknown, desc: "iptables target " + x.Name, rewrite: true}
					continue
				}
				out.rule.conds = append(out.rule.conds, cond{desc: "iptables match " + x.Name, eval: func(*probe) tri { return maybe }})
			default:
				// queue, dnat, redirect, tproxy, synproxy, ...: what they do to
				// the probe is not modelled, and later hooks may see another
				// packet or none.
				out.rule.v = verdict{kind: vUnknown, desc: k + " " + compact(raw), rewrite: true}
			}
		}
	}
	return out
}

// exprString renders a JSON expression in nft's own syntax where it is
// one of the common forms ("tcp dport", "{ 22, 80 }", "10.0.0.0/8"), and
// as compact JSON otherwise.
func exprString(raw json.RawMessage) string {
	return exprDepth(raw, 0)
}

func exprDepth(raw json.RawMessage, depth int) string {
	if depth > 3 {
		return compact(raw)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) == nil {
		parts := make([]string, 0, len(arr))
		for i, e := range arr {
			if i == 8 {
				parts = append(parts, fmt.Sprintf("... %d more", len(arr)-8))
				break
			}
			parts = append(parts, exprDepth(e, depth+1))
		}
		return strings.Join(parts, ",")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || len(obj) != 1 {
		return compact(raw)
	}
	for k, v := range obj {
		var f struct {
			Protocol, Field, Key, Addr string
			Len                        int
		}
		switch k {
		case "payload":
			if json.Unmarshal(v, &f) == nil && f.Protocol != "" {
				return f.Protocol + " " + f.Field
			}
		case "meta", "ct":
			if json.Unmarshal(v, &f) == nil && f.Key != "" {
				return k + " " + f.Key
			}
		case "prefix":
			if json.Unmarshal(v, &f) == nil {
				return fmt.Sprintf("%s/%d", f.Addr, f.Len)
			}
		case "range":
			var ends []json.RawMessage
			if json.Unmarshal(v, &ends) == nil && len(ends) == 2 {
				return exprDepth(ends[0], depth+1) + "-" + exprDepth(ends[1], depth+1)
			}
		case "set":
			return "{ " + strings.ReplaceAll(exprDepth(v, depth+1), ",", ", ") + " }"
		case "fib":
			var fb struct {
				Result string
				Flags  json.RawMessage
			}
			if json.Unmarshal(v, &fb) == nil {
				return "fib " + strings.Join(stringsOf(fb.Flags), " . ") + " " + fb.Result
			}
		}
	}
	return compact(raw)
}

func compact(raw json.RawMessage) string {
	s := strings.Join(strings.Fields(string(raw)), "")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// rejectDependency: nft lists "meta nfproto ipv4 reject" (and "meta
// l4proto tcp reject with tcp reset") as a bare reject whose type implies
// the match it dropped from the listing: icmp rejects only IPv4, icmpv6 only
// IPv6, tcp reset only TCP. icmpx applies to both families.
func rejectDependency(raw json.RawMessage) (cond, bool) {
	var r struct{ Type string }
	if json.Unmarshal(raw, &r) != nil {
		return cond{}, false
	}
	switch r.Type {
	case "icmp":
		return cond{desc: "meta nfproto ipv4 (implied by reject with icmp)", eval: func(p *probe) tri { return triOf(p.family == "ip") }}, true
	case "icmpv6":
		return cond{desc: "meta nfproto ipv6 (implied by reject with icmpv6)", eval: func(p *probe) tri { return triOf(p.family == "ip6") }}, true
	case "tcp reset":
		return cond{desc: "meta l4proto tcp (implied by reject with tcp reset)", eval: func(p *probe) tri { return triOf(p.proto == "tcp") }}, true
	}
	return cond{}, false
}

// nftVmap builds a verdict map statement: {"key": L, "data": {"set": [[k, v], ...]} | "@map"}.
func nftVmap(t *nftTable, fam string, raw json.RawMessage, lit *literals) verdict {
	var m struct {
		Key  json.RawMessage
		Data json.RawMessage
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return verdict{kind: vUnknown, desc: "vmap " + compact(raw)}
	}
	left := nftLeft(fam, m.Key)
	var pairs []json.RawMessage
	var name string
	if json.Unmarshal(m.Data, &name) == nil && strings.HasPrefix(name, "@") {
		pairs = t.sets[name[1:]]
	} else {
		var s struct{ Set []json.RawMessage }
		if json.Unmarshal(m.Data, &s) != nil {
			return verdict{kind: vUnknown, desc: "vmap " + compact(raw)}
		}
		pairs = s.Set
	}
	v := verdict{kind: vMap, desc: "vmap"}
	for _, p := range pairs {
		var kv []json.RawMessage
		if json.Unmarshal(p, &kv) != nil || len(kv) != 2 {
			// {"elem": {"val": [k, v]}} wrappers are not expected in maps
			return verdict{kind: vUnknown, desc: "vmap element " + compact(p)}
		}
		left.note(t, kv[0], lit)
		key := decode(kv[0])
		keyRaw := kv[0]
		e := mapEntry{key: cond{lazy: func() string { return exprString(m.Key) + " " + exprString(keyRaw) }, eval: func(pr *probe) tri {
			switch left.kind {
			case lUnknown:
				return maybe // concatenations, raw payloads, ...
			case lNever:
				if pr.proto == left.needs {
					return maybe
				}
				return no
			}
			if a := left.applies(pr); a != yes {
				return a
			}
			return left.member(pr, t, key)
		}}}
		var st map[string]json.RawMessage
		if json.Unmarshal(kv[1], &st) != nil {
			return verdict{kind: vUnknown, desc: "vmap verdict " + compact(kv[1])}
		}
		e.v = verdict{kind: vUnknown, desc: "vmap verdict " + compact(kv[1])}
		for k, r := range st {
			switch k {
			case "accept":
				e.v = verdict{kind: vAccept}
			case "drop":
				e.v = verdict{kind: vDrop}
			case "reject":
				e.v = verdict{kind: vDrop, desc: "reject"}
			case "return":
				e.v = verdict{kind: vReturn}
			case "continue":
				e.v = verdict{kind: vNone}
			case "jump", "goto":
				var j struct{ Target string }
				_ = json.Unmarshal(r, &j)
				e.v = verdict{kind: vJump, target: j.Target}
				if k == "goto" {
					e.v.kind = vGoto
				}
			}
		}
		v.entries = append(v.entries, e)
	}
	return v
}

// leftKind is what a match's left side reads from the probe.
type leftKind int8

const (
	lUnknown leftKind = iota
	lNever            // a header the probe does not have (icmp type of a tcp probe)
	lPort             // dport / sport
	lAddr             // saddr / daddr
	lIface            // iif / iifname
	lName             // a name: l4proto, nfproto, pkttype, meta protocol
	lFlags            // ct state, tcp flags, ct status
)

// left is a match's left side, bound to one probe field.
type left struct {
	kind leftKind
	desc string
	// needs is a protocol header the expression depends on: the probe
	// must carry it ("ip", "ip6", "tcp", "udp", "th").
	needs string
	get   func(p *probe) any
	mask  []string // for flags: "tcp flags & (syn|ack)"
	sport bool     // a source port: chosen by the sender
}

func (l left) applies(p *probe) tri {
	switch l.needs {
	case "":
		return yes
	case "ip", "ip6":
		return triOf(p.family == l.needs)
	case "tcp", "udp":
		return triOf(p.proto == l.needs)
	case "th":
		return yes
	}
	return no
}

// nftLeft decodes the left side of a match.
func nftLeft(fam string, raw json.RawMessage) left {
	var e map[string]json.RawMessage
	if json.Unmarshal(raw, &e) != nil {
		return left{desc: compact(raw)}
	}
	l := left{desc: compact(raw)}
	if v, ok := e["&"]; ok {
		var parts []json.RawMessage
		if json.Unmarshal(v, &parts) != nil || len(parts) != 2 {
			return l
		}
		inner := nftLeft(fam, parts[0])
		if inner.kind != lFlags {
			return left{desc: l.desc}
		}
		mask := stringsOf(parts[1])
		if mask == nil {
			return left{desc: l.desc}
		}
		inner.mask, inner.desc = mask, l.desc
		return inner
	}
	if v, ok := e["payload"]; ok {
		var p struct{ Protocol, Field string }
		if json.Unmarshal(v, &p) != nil || p.Protocol == "" {
			return l // raw payload offsets
		}
		switch p.Protocol {
		case "ip", "ip6":
			l.needs = p.Protocol
			switch p.Field {
			case "saddr":
				l.kind, l.get = lAddr, func(pr *probe) any { return pr.saddr }
			case "daddr":
				l.kind, l.get = lAddr, func(pr *probe) any { return pr.daddr }
			case "protocol", "nexthdr":
				l.kind, l.get = lName, func(pr *probe) any { return pr.proto }
			case "version":
				l.kind, l.get = lName, func(pr *probe) any { return map[string]string{"ip": "4", "ip6": "6"}[pr.family] }
			}
			return l
		case "tcp", "udp", "th":
			l.needs = p.Protocol
			switch p.Field {
			case "dport":
				l.kind, l.get = lPort, func(pr *probe) any { return pr.dport }
			case "sport":
				l.kind, l.get, l.sport = lPort, func(pr *probe) any { return pr.sport }, true
			case "flags":
				if p.Protocol == "tcp" {
					l.kind, l.get = lFlags, func(pr *probe) any { return pr.tcpFlags }
				}
			}
			return l
		case "icmp", "icmpv6", "sctp", "dccp", "udplite", "esp", "ah", "comp", "igmp", "gre":
			l.kind, l.needs = lNever, p.Protocol
			return l
		}
		return l
	}
	if v, ok := e["meta"]; ok {
		var m struct{ Key string }
		_ = json.Unmarshal(v, &m)
		switch m.Key {
		case "iif", "iifname":
			l.kind, l.get = lIface, func(pr *probe) any { return pr.iif }
		case "l4proto":
			l.kind, l.get = lName, func(pr *probe) any { return pr.proto }
		case "nfproto":
			l.kind, l.get = lName, func(pr *probe) any { return map[string]string{"ip": "ipv4", "ip6": "ipv6"}[pr.family] }
		case "protocol":
			l.kind, l.get = lName, func(pr *probe) any { return pr.family }
		case "pkttype":
			l.kind, l.get = lName, func(pr *probe) any { return "host" }
		case "iiftype":
			l.kind, l.get = lName, func(pr *probe) any { return "ether" }
		}
		return l
	}
	if v, ok := e["ct"]; ok {
		var c struct{ Key, Dir string }
		_ = json.Unmarshal(v, &c)
		switch c.Key {
		case "state":
			l.kind, l.get = lFlags, func(*probe) any { return []string{"new"} }
		case "status":
			l.kind, l.get = lFlags, func(*probe) any { return []string{} }
		case "direction":
			l.kind, l.get = lName, func(*probe) any { return "original" }
		}
		return l
	}
	if v, ok := e["fib"]; ok {
		var f struct {
			Result string
			Flags  json.RawMessage
		}
		_ = json.Unmarshal(v, &f)
		if fl := stringsOf(f.Flags); f.Result == "type" && len(fl) == 1 && fl[0] == "daddr" {
			// the probe is addressed to the host itself
			l.kind, l.get = lName, func(*probe) any { return "local" }
		}
		return l
	}
	return l
}

// stringsOf reads a string or a list of strings.
func stringsOf(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many
	}
	return nil
}

// nftMatch builds one match statement.
func nftMatch(t *nftTable, fam string, raw json.RawMessage, lit *literals) cond {
	var m struct {
		Op    string
		Left  json.RawMessage
		Right json.RawMessage
	}
	if json.Unmarshal(raw, &m) != nil {
		return cond{desc: compact(raw), eval: func(*probe) tri { return maybe }}
	}
	l := nftLeft(fam, m.Left)
	op := m.Op
	lazy := func() string {
		if op == "==" || op == "in" {
			return exprString(m.Left) + " " + exprString(m.Right)
		}
		return exprString(m.Left) + " " + op + " " + exprString(m.Right)
	}
	if l.kind == lUnknown {
		return cond{lazy: lazy, eval: func(*probe) tri { return maybe }}
	}
	if l.kind == lNever {
		return cond{lazy: lazy, eval: func(p *probe) tri {
			if p.proto == l.needs {
				return maybe
			}
			return no
		}}
	}
	l.note(t, m.Right, lit)
	if n, ok := portOf(m.Right); ok && l.kind == lPort {
		// "th dport >= 40000" lists 40000-65535, so an unlisted port lies
		// below it.
		switch m.Op {
		case "<":
			if n > 0 {
				l.notePort(lit, 0, n-1)
			}
		case "<=":
			l.notePort(lit, 0, n)
		case ">":
			if n < 65535 {
				l.notePort(lit, n+1, 65535)
			}
		case ">=":
			l.notePort(lit, n, 65535)
		}
	}
	right := decode(m.Right)
	return cond{lazy: lazy, eval: func(p *probe) tri {
		if a := l.applies(p); a != yes {
			return a
		}
		switch op {
		case "==", "in":
			if l.kind == lFlags && op == "==" {
				return l.flagsEqual(p, right)
			}
			return l.member(p, t, right)
		case "!=":
			if l.kind == lFlags {
				return l.flagsEqual(p, right).not()
			}
			return l.member(p, t, right).not()
		case "<", ">", "<=", ">=":
			return l.compare(p, op, right)
		}
		return maybe
	}}
}

func (l left) notePort(lit *literals, lo, hi uint16) {
	if l.sport {
		lit.sport(lo, hi)
	} else {
		lit.port(lo, hi)
	}
}

// note records the literals a right side lists, for the probe's choice.
func (l left) note(t *nftTable, right json.RawMessage, lit *literals) {
	switch l.kind {
	case lPort, lAddr, lIface:
	default:
		return
	}
	var walk func(raw json.RawMessage, depth int)
	walk = func(raw json.RawMessage, depth int) {
		if depth > 4 {
			return
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if strings.HasPrefix(s, "@") {
				// A set's literals are noted once, however many rules use it.
				key := fmt.Sprintf("%s/%d/%v", s, l.kind, l.sport)
				if t.noted[key] {
					return
				}
				if t.noted == nil {
					t.noted = map[string]bool{}
				}
				t.noted[key] = true
				for _, e := range t.sets[s[1:]] {
					walk(e, depth+1)
				}
				return
			}
			switch l.kind {
			case lAddr:
				if a, err := netip.ParseAddr(s); err == nil {
					lit.addr(a, a)
				}
			case lIface:
				lit.iface(s)
			case lPort:
				if n, ok := portOf(raw); ok {
					l.notePort(lit, n, n)
				}
			}
			return
		}
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			if v, ok := portOf(raw); ok && l.kind == lPort {
				l.notePort(lit, v, v)
			}
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) == nil {
			if r, ok := obj["range"]; ok {
				var ends []json.RawMessage
				if json.Unmarshal(r, &ends) == nil && len(ends) == 2 {
					switch l.kind {
					case lPort:
						lo, ok1 := portOf(ends[0])
						hi, ok2 := portOf(ends[1])
						if ok1 && ok2 {
							l.notePort(lit, lo, hi)
						}
					case lAddr:
						var a, b string
						if json.Unmarshal(ends[0], &a) == nil && json.Unmarshal(ends[1], &b) == nil {
							lo, e1 := netip.ParseAddr(a)
							hi, e2 := netip.ParseAddr(b)
							if e1 == nil && e2 == nil {
								lit.addr(lo, hi)
							}
						}
					}
				}
			}
			if p, ok := obj["prefix"]; ok && l.kind == lAddr {
				if pf, ok := prefixOf(p); ok {
					lit.prefix(pf)
				}
			}
			if s, ok := obj["set"]; ok {
				var es []json.RawMessage
				if json.Unmarshal(s, &es) == nil {
					for _, e := range es {
						walk(e, depth+1)
					}
				}
			}
			if e, ok := obj["elem"]; ok {
				var el struct{ Val json.RawMessage }
				if json.Unmarshal(e, &el) == nil {
					walk(el.Val, depth+1)
				}
			}
			return
		}
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) == nil {
			for _, e := range arr {
				walk(e, depth+1)
			}
		}
	}
	walk(right, 0)
}

var serviceNames = map[string]uint16{"ssh": 22, "http": 80, "https": 443, "domain": 53, "smtp": 25, "ntp": 123,
	"bootps": 67, "bootpc": 68, "mdns": 5353, "ftp": 21, "telnet": 23, "imap": 143, "imaps": 993, "pop3": 110,
	"pop3s": 995, "submission": 587, "ldap": 389, "ldaps": 636, "snmp": 161, "kerberos": 88, "microsoft-ds": 445,
	"netbios-ns": 137, "netbios-dgm": 138, "netbios-ssn": 139, "ipp": 631, "rdp": 3389, "ms-wbt-server": 3389}

func portOf(raw json.RawMessage) (uint16, bool) {
	var n uint64
	if json.Unmarshal(raw, &n) == nil && n <= 65535 {
		return uint16(n), true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if v, err := strconv.ParseUint(s, 10, 16); err == nil {
			return uint16(v), true
		}
		if v, ok := serviceNames[s]; ok {
			return v, true
		}
	}
	return 0, false
}

func prefixOf(raw json.RawMessage) (netip.Prefix, bool) {
	var p struct {
		Addr string
		Len  int
	}
	if json.Unmarshal(raw, &p) != nil {
		return netip.Prefix{}, false
	}
	a, err := netip.ParseAddr(p.Addr)
	if err != nil {
		return netip.Prefix{}, false
	}
	pf, err := a.Prefix(p.Len)
	return pf, err == nil
}

// decode turns a JSON value into Go values (maps, slices, strings,
// float64) once, so evaluating a probe never parses JSON again.
func decode(raw json.RawMessage) any {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	return typed(v, 0)
}

// typed replaces address strings and prefix objects by netip values, so a
// lookup never parses an address again.
func typed(v any, depth int) any {
	if depth > 8 {
		return v
	}
	switch x := v.(type) {
	case string:
		if len(x) >= 2 && len(x) <= 45 && (strings.Contains(x, ".") || strings.Contains(x, ":")) {
			if a, err := netip.ParseAddr(x); err == nil {
				return a.Unmap()
			}
		}
	case []any:
		for i := range x {
			x[i] = typed(x[i], depth+1)
		}
	case map[string]any:
		if pm, ok := x["prefix"].(map[string]any); ok && len(x) == 1 {
			if pf, ok := prefixOfAny(pm); ok {
				return pf.Masked()
			}
		}
		for k := range x {
			x[k] = typed(x[k], depth+1)
		}
	}
	return v
}

// setElems returns a named set's or map's elements, decoded once.
func (t *nftTable) setElems(name string) ([]any, bool) {
	if es, ok := t.decoded[name]; ok {
		return es, true
	}
	raw, ok := t.sets[name]
	if !ok {
		return nil, false
	}
	es := make([]any, len(raw))
	for i, r := range raw {
		es[i] = decode(r)
	}
	if t.decoded == nil {
		t.decoded = map[string][]any{}
	}
	t.decoded[name] = es
	return es, true
}

// member: does the probe's value equal the right side, or lie in it (a
// set, a named set, a range, a prefix)?
func (l left) member(p *probe, t *nftTable, right any) tri {
	return l.memberDepth(p, t, right, 0)
}

func (l left) memberDepth(p *probe, t *nftTable, right any, depth int) tri {
	if depth > 4 {
		return maybe
	}
	any3 := func(es []any) tri {
		res := no
		if !p.spend(len(es)) {
			return maybe
		}
		for _, e := range es {
			switch l.memberDepth(p, t, e, depth+1) {
			case yes:
				return yes
			case maybe:
				res = maybe
			}
		}
		return res
	}
	val := l.get(p)
	switch r := right.(type) {
	case netip.Prefix:
		a, ok := val.(netip.Addr)
		if !ok {
			return maybe
		}
		if r.Addr().BitLen() != a.BitLen() {
			return no
		}
		return triOf(r.Contains(a))
	case netip.Addr:
		a, ok := val.(netip.Addr)
		if !ok {
			return maybe
		}
		return triOf(r == a)
	case string:
		if strings.HasPrefix(r, "@") {
			es, ok := t.setElems(r[1:])
			if !ok {
				return maybe
			}
			if res := any3(es); res == yes || !t.dynamic[r[1:]] {
				return res
			}
			// Not in the set now, but packets fill it: the sender may
			// get itself added.
			return maybe
		}
	case []any:
		// a list of flags or names: any of them
		return any3(r)
	case map[string]any:
		if st, ok := r["set"]; ok {
			if es, ok := st.([]any); ok {
				return any3(es)
			}
			return l.memberDepth(p, t, st, depth+1)
		}
		if e, ok := r["elem"].(map[string]any); ok {
			return l.memberDepth(p, t, e["val"], depth+1)
		}
		if rg, ok := r["range"].([]any); ok {
			if len(rg) != 2 {
				return maybe
			}
			switch v := val.(type) {
			case uint16:
				lo, ok1 := portOfAny(rg[0])
				hi, ok2 := portOfAny(rg[1])
				if !ok1 || !ok2 {
					return maybe
				}
				return triOf(lo <= v && v <= hi)
			case netip.Addr:
				lo, ok1 := rg[0].(netip.Addr)
				hi, ok2 := rg[1].(netip.Addr)
				if !ok1 || !ok2 {
					return maybe
				}
				if lo.BitLen() != v.BitLen() {
					return no
				}
				return triOf(lo.Compare(v) <= 0 && v.Compare(hi) <= 0)
			}
			return maybe
		}
		if pr, ok := r["prefix"].(map[string]any); ok {
			a, isAddr := val.(netip.Addr)
			pf, ok := prefixOfAny(pr)
			if !isAddr || !ok {
				return maybe
			}
			if pf.Addr().BitLen() != a.BitLen() {
				return no
			}
			return triOf(pf.Contains(a))
		}
		return maybe // concatenations, expressions as values
	}
	return l.scalarEqual(val, right)
}

func portOfAny(v any) (uint16, bool) {
	switch x := v.(type) {
	case float64:
		if x >= 0 && x <= 65535 && x == float64(uint16(x)) {
			return uint16(x), true
		}
	case string:
		if n, err := strconv.ParseUint(x, 10, 16); err == nil {
			return uint16(n), true
		}
		n, ok := serviceNames[x]
		return n, ok
	}
	return 0, false
}

func prefixOfAny(m map[string]any) (netip.Prefix, bool) {
	addr, _ := m["addr"].(string)
	n, ok := m["len"].(float64)
	a, err := netip.ParseAddr(addr)
	if err != nil || !ok {
		return netip.Prefix{}, false
	}
	pf, err := a.Prefix(int(n))
	return pf, err == nil
}

// scalarEqual compares the probe's value with one scalar of the ruleset.
func (l left) scalarEqual(val any, right any) tri {
	switch v := val.(type) {
	case uint16:
		n, ok := portOfAny(right)
		if !ok {
			return maybe
		}
		return triOf(n == v)
	case netip.Addr:
		s, ok := right.(string)
		if !ok {
			return maybe
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return maybe
		}
		return triOf(a.Unmap() == v)
	case string:
		s, ok := right.(string)
		if !ok {
			if n, isNum := right.(float64); isNum && l.kind == lName {
				return triOf(protoNumbers[v] != 0 && float64(protoNumbers[v]) == n)
			}
			return maybe
		}
		if l.kind == lIface {
			if strings.HasSuffix(s, "*") && !strings.HasSuffix(s, `\*`) {
				return triOf(strings.HasPrefix(v, strings.TrimSuffix(s, "*")))
			}
			return triOf(s == v)
		}
		return triOf(strings.EqualFold(s, v) || aliases[strings.ToLower(s)] == v)
	case []string:
		s, ok := right.(string)
		if !ok {
			return maybe
		}
		for _, f := range v {
			if f == s {
				return yes
			}
		}
		return no
	}
	return maybe
}

var protoNumbers = map[string]uint64{"tcp": 6, "udp": 17, "ipv4": 2, "ipv6": 10}

var aliases = map[string]string{"ipv6-icmp": "icmpv6", "ip": "ip", "ip6": "ip6"}

// stringsOfAny reads a string or a list of strings.
func stringsOfAny(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	return nil
}

// flagsEqual: "tcp flags & (fin|syn|rst|ack) == syn" compares the masked
// flags with exactly the listed ones.
func (l left) flagsEqual(p *probe, right any) tri {
	have, _ := l.get(p).([]string)
	want := stringsOfAny(right)
	if want == nil {
		m, ok := right.(map[string]any)
		if !ok {
			return maybe
		}
		set := stringsOfAny(m["set"])
		if set == nil {
			return maybe
		}
		// "ct state == { new, established }": one of them
		for _, w := range set {
			for _, h := range have {
				if h == w {
					return yes
				}
			}
		}
		return no
	}
	masked := have
	if l.mask != nil {
		masked = nil
		for _, h := range have {
			for _, m := range l.mask {
				if h == m {
					masked = append(masked, h)
				}
			}
		}
	}
	if len(masked) != len(want) {
		return no
	}
	for _, w := range want {
		found := false
		for _, h := range masked {
			found = found || h == w
		}
		if !found {
			return no
		}
	}
	return yes
}

// compare: "tcp dport > 1023", "tcp dport < 1024".
func (l left) compare(p *probe, op string, right any) tri {
	v, ok := l.get(p).(uint16)
	n, ok2 := portOfAny(right)
	if !ok || !ok2 {
		return maybe
	}
	switch op {
	case "<":
		return triOf(v < n)
	case ">":
		return triOf(v > n)
	case "<=":
		return triOf(v <= n)
	case ">=":
		return triOf(v >= n)
	}
	return maybe
}
