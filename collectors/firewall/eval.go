package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// The Linux evaluator answers one question about the rulesets the kernel
// has loaded: is a new inbound TCP or UDP connection, to a port no rule
// lists, from an address no rule lists, arriving on a non-loopback
// interface, dropped? It walks the rules the way netfilter does (every base
// chain on the path must let the packet through; accept ends one base
// chain, drop and reject are final; jump, goto, return, verdict maps), with
// each match evaluated on that packet. A match it cannot evaluate is
// "maybe": both outcomes are followed, and when they disagree the verdict
// is unknown, naming the rule and the match. Allowed services (a listed
// port, a listed source network, a named interface) therefore do not break
// default deny; a rule that accepts every port, every source or every
// protocol does.

// tri is a three-valued truth.
type tri int8

const (
	no tri = iota
	yes
	maybe  // not known: the evaluator cannot tell
	either // the sender chooses (a rate limit, a quota): both happen
)

func triOf(b bool) tri {
	if b {
		return yes
	}
	return no
}

func (t tri) not() tri {
	switch t {
	case yes:
		return no
	case no:
		return yes
	}
	return t
}

// probe is the packet the evaluator follows.
type probe struct {
	family string // "ip" or "ip6"
	proto  string // "tcp" or "udp"
	iif    string // interface name
	dport  uint16
	sport  uint16
	saddr  netip.Addr
	daddr  netip.Addr
	// tcpFlags are the flags of the first TCP segment: {syn}, or a SYN
	// asking for ECN ({syn, ece, cwr}).
	tcpFlags []string
	// budget is the work left for the whole evaluation (rule visits and
	// set elements compared); shared by every probe.
	budget *int
}

// spend takes n from the probe's budget and reports whether any is left.
func (p *probe) spend(n int) bool {
	if p.budget == nil {
		return true
	}
	*p.budget -= n
	return *p.budget > 0
}

func (p *probe) String() string {
	on := p.iif
	if strings.HasPrefix(on, "evprobe") {
		on = "an interface no rule names"
	}
	return fmt.Sprintf("new %s %s connection from %s port %d to %s port %d on %s", familyName(p.family), p.proto, p.saddr, p.sport, p.daddr, p.dport, on)
}

func familyName(f string) string {
	if f == "ip6" {
		return "IPv6"
	}
	return "IPv4"
}

// cond is one match of a rule.
type cond struct {
	desc string // as the rule says it, for reasons
	// lazy, when set, renders desc on demand: most matches never appear in
	// a reason, and rendering them costs more than evaluating them.
	lazy func() string
	eval func(p *probe) tri
}

func (c cond) text() string {
	if c.lazy != nil {
		return c.lazy()
	}
	return c.desc
}

// verdictKind is what a rule does when all its matches hold.
type verdictKind int8

const (
	vNone    verdictKind = iota // no verdict (counter, log, mark...): next rule
	vAccept                     // ends this base chain; the packet goes on to the next one
	vDrop                       // final (reject too)
	vJump                       // call a chain; its end returns here
	vGoto                       // continue in a chain; its end returns to our caller
	vReturn                     // back to the caller (or the base chain's policy)
	vMap                        // verdict map: the key picks the verdict
	vUnknown                    // a statement whose effect is not modelled (queue, ...)
)

type verdict struct {
	kind   verdictKind
	target string // chain of vJump / vGoto
	// vMap: the key's truth per entry, in order; the first entry that is
	// yes decides, maybe forks.
	entries []mapEntry
	desc    string
	// rewrite marks a vUnknown statement that changes the packet or its
	// fate for every later hook (dnat, redirect, payload set, notrack,
	// queue): no later drop may be trusted.
	rewrite bool
}

type mapEntry struct {
	key cond
	v   verdict
}

type rule struct {
	loc   string // "table inet f chain input handle 4"
	conds []cond
	v     verdict
}

type chain struct {
	name  string
	rules []rule
}

// baseChain is a chain attached to a hook: a packet passes through it.
type baseChain struct {
	loc      string // "table inet f chain input"
	family   string // ip, ip6, inet
	hook     string // prerouting, input
	prio     int
	policy   string // accept, drop
	chain    string
	chains   map[string]*chain // the chains of its table
	source   string            // backend name: nftables, iptables-legacy, ...
	lastNote string
}

// outcome is where one path through a base chain ended.
type outcome struct {
	kind  verdictKind // vAccept, vDrop, vUnknown
	where string      // the rule or policy that decided
	// why: for vUnknown, the match or statement not understood; for the
	// others, set when the path went through a match the evaluator could
	// not decide (the outcome is then not certain).
	why     string
	rewrite bool
}

// Work bounds: a hostile ruleset (deep jump chains, loops, huge maps) must
// not hold the collector.
const (
	maxDepth    = 32     // nested jumps (the kernel allows 16)
	maxSteps    = 200000 // rule visits per probe and base chain
	maxOutcomes = 1024   // distinct paths (each fork doubles them)
	// maxWork bounds one collection's evaluation: rule visits plus set
	// elements compared, over every probe.
	maxWork = 5_000_000
)

type walker struct {
	p        *probe
	bc       *baseChain
	steps    int
	outcomes []outcome
	aborted  string
}

func (w *walker) add(o outcome) {
	if len(w.outcomes) >= maxOutcomes {
		w.aborted = fmt.Sprintf("more than %d paths through %s", maxOutcomes, w.bc.loc)
		return
	}
	w.outcomes = append(w.outcomes, o)
}

// frame is one return address on the jump stack.
type frame struct {
	chain string
	next  int
}

// run follows the probe from rule i of chain c with the given stack of
// return addresses.
func (w *walker) run(c string, i int, stack []frame, via string) {
	for {
		if w.aborted != "" {
			return
		}
		ch := w.bc.chains[c]
		if ch == nil {
			w.add(outcome{kind: vUnknown, where: via, why: fmt.Sprintf("jump to chain %q, which is not in the ruleset", c)})
			return
		}
		if i >= len(ch.rules) {
			// End of a chain: back to the caller, or the base chain's policy.
			if len(stack) == 0 {
				k := vAccept
				if w.bc.policy == "drop" {
					k = vDrop
				}
				w.add(outcome{kind: k, where: w.bc.loc + " policy " + w.bc.policy})
				return
			}
			top := stack[len(stack)-1]
			stack, c, i = stack[:len(stack)-1], top.chain, top.next
			continue
		}
		w.steps++
		if w.steps > maxSteps {
			w.aborted = fmt.Sprintf("more than %d rule visits in %s", maxSteps, w.bc.loc)
			return
		}
		if !w.p.spend(1) {
			w.aborted = "the ruleset is too large to evaluate within the work bound"
			return
		}
		r := &ch.rules[i]
		t, unknown := yes, ""
		for _, cd := range r.conds {
			switch cd.eval(w.p) {
			case no:
				t = no
			case maybe:
				if t == yes || t == either {
					t, unknown = maybe, cd.text()
				}
			case either:
				if t == yes {
					t = either
				}
			}
			if t == no {
				break
			}
		}
		if w.p.budget != nil && *w.p.budget <= 0 {
			w.aborted = "the ruleset is too large to evaluate within the work bound"
			return
		}
		switch t {
		case no:
			i++
			continue
		case maybe, either:
			// Follow both: the rule does not apply, and it does. Under a
			// match the evaluator cannot decide, every path carries the
			// doubt; under the sender's choice, both are certain.
			doubt := ""
			if t == maybe {
				doubt = fmt.Sprintf("%s: cannot evaluate %s", r.loc, unknown)
			}
			before := len(w.outcomes)
			w.run(c, i+1, slices.Clone(stack), via)
			w.apply(r, r.v, c, i, stack)
			w.doubt(before, doubt)
			return
		}
		w.apply(r, r.v, c, i, stack)
		return
	}
}

// doubt marks the outcomes from index before on as uncertain.
func (w *walker) doubt(before int, why string) {
	if why == "" {
		return
	}
	for j := before; j < len(w.outcomes); j++ {
		if w.outcomes[j].why == "" {
			w.outcomes[j].why = why
		}
	}
}

// apply carries out verdict v of rule r (rule i of chain c).
func (w *walker) apply(r *rule, v verdict, c string, i int, stack []frame) {
	switch v.kind {
	case vNone:
		w.run(c, i+1, stack, r.loc)
	case vAccept:
		w.add(outcome{kind: vAccept, where: r.loc + ": " + describe(r, v)})
	case vDrop:
		w.add(outcome{kind: vDrop, where: r.loc + ": " + describe(r, v)})
	case vReturn:
		if len(stack) == 0 {
			k := vAccept
			if w.bc.policy == "drop" {
				k = vDrop
			}
			w.add(outcome{kind: k, where: r.loc + ": return to " + w.bc.loc + " policy " + w.bc.policy})
			return
		}
		top := stack[len(stack)-1]
		w.run(top.chain, top.next, stack[:len(stack)-1], r.loc)
	case vJump, vGoto:
		if len(stack) >= maxDepth {
			w.add(outcome{kind: vUnknown, where: r.loc, why: fmt.Sprintf("jumps nested deeper than %d", maxDepth)})
			return
		}
		if v.kind == vJump {
			stack = append(slices.Clone(stack), frame{chain: c, next: i + 1})
		}
		w.run(v.target, 0, stack, r.loc)
	case vMap:
		// The first entry whose key holds decides; an entry that may hold
		// forks, and everything after it carries the doubt.
		before, doubt := len(w.outcomes), ""
		for _, e := range v.entries {
			switch e.key.eval(w.p) {
			case yes:
				w.apply(r, e.v, c, i, stack)
				w.doubt(before, doubt)
				return
			case maybe, either:
				if doubt == "" {
					doubt = fmt.Sprintf("%s: cannot evaluate %s", r.loc, e.key.text())
				}
				w.apply(r, e.v, c, i, slices.Clone(stack))
			}
		}
		// No entry matched: the map gives no verdict, the next rule runs.
		w.run(c, i+1, stack, r.loc)
		w.doubt(before, doubt)
	default:
		w.add(outcome{kind: vUnknown, where: r.loc, why: r.loc + ": " + v.desc + " is not modelled", rewrite: v.rewrite})
	}
}

func describe(r *rule, v verdict) string {
	name := "accept"
	if v.kind == vDrop {
		name = "drop"
		if v.desc != "" {
			name = v.desc
		}
	}
	if len(r.conds) == 0 {
		return name + " with no match"
	}
	ds := make([]string, len(r.conds))
	for i, c := range r.conds {
		ds[i] = c.text()
	}
	return name + " when " + strings.Join(ds, " and ")
}

// chainResult is what one base chain does to the probe.
type chainResult struct {
	kind    verdictKind // vAccept, vDrop or vUnknown
	where   string
	why     string
	rewrite bool
}

func (bc *baseChain) evaluate(p *probe) chainResult {
	w := &walker{p: p, bc: bc}
	w.run(bc.chain, 0, nil, bc.loc)
	if w.aborted != "" {
		return chainResult{kind: vUnknown, where: bc.loc, why: w.aborted}
	}
	var sure, acc, drop, unk *outcome
	for i := range w.outcomes {
		o := &w.outcomes[i]
		switch {
		case o.kind == vUnknown:
			if unk == nil || (o.rewrite && !unk.rewrite) {
				unk = o
			}
		case o.kind == vAccept && o.why == "" && sure == nil:
			sure = o
		case o.kind == vAccept && acc == nil:
			acc = o
		case o.kind == vDrop && drop == nil:
			drop = o
		}
	}
	switch {
	case sure != nil:
		// A path the sender can take without any doubt lets it in.
		return chainResult{kind: vAccept, where: sure.where}
	case unk != nil:
		return chainResult{kind: vUnknown, where: unk.where, why: unk.why, rewrite: unk.rewrite}
	case acc != nil && drop != nil:
		// Paths disagree: one of them went through a match not understood.
		return chainResult{kind: vUnknown, where: acc.where, why: acc.why}
	case drop != nil:
		return chainResult{kind: vDrop, where: drop.where}
	case acc != nil:
		// Every path accepts, whatever the doubtful matches say.
		return chainResult{kind: vAccept, where: acc.where}
	}
	return chainResult{kind: vUnknown, where: bc.loc, why: "no path through " + bc.loc}
}

// hookOrder sorts base chains the way a packet meets them.
func hookOrder(bcs []*baseChain) {
	rank := map[string]int{"prerouting": 0, "input": 1}
	sort.SliceStable(bcs, func(i, j int) bool {
		if rank[bcs[i].hook] != rank[bcs[j].hook] {
			return rank[bcs[i].hook] < rank[bcs[j].hook]
		}
		return bcs[i].prio < bcs[j].prio
	})
}

// probeResult is the fate of one probe through every base chain.
type probeResult struct {
	p     probe
	kind  verdictKind // vAccept (open), vDrop (denied), vUnknown
	where string
	why   string
}

// evaluateProbe sends p through every base chain of its family.
func evaluateProbe(bcs []*baseChain, p probe) probeResult {
	var unk *chainResult
	var accepts []string
	for _, bc := range bcs {
		if bc.family != p.family && bc.family != "inet" {
			continue
		}
		r := bc.evaluate(&p)
		switch r.kind {
		case vDrop:
			return probeResult{p: p, kind: vDrop, where: r.where}
		case vUnknown:
			if r.rewrite {
				// The packet may be changed or taken elsewhere here: what
				// later hooks do to the unchanged probe says nothing.
				return probeResult{p: p, kind: vUnknown, where: r.where, why: r.why}
			}
			if unk == nil {
				unk = &r
			}
		default:
			accepts = append(accepts, r.where)
		}
	}
	if unk != nil {
		return probeResult{p: p, kind: vUnknown, where: unk.where, why: unk.why}
	}
	if len(accepts) == 0 {
		return probeResult{p: p, kind: vAccept, where: "no input filter for " + p.family}
	}
	// Report the rule that let it in: the one that is not a plain policy
	// accept, when there is one.
	where := accepts[0]
	for _, a := range accepts {
		if !strings.HasSuffix(a, "policy accept") {
			where = a
			break
		}
	}
	return probeResult{p: p, kind: vAccept, where: where}
}

// familyVerdict evaluates the TCP and UDP probes of one family on every
// candidate interface: denied only when every probe is dropped.
func familyVerdict(bcs []*baseChain, family string, ifaces []string, daddrs []netip.Addr, lit literals, budget *int) Family {
	f := Family{Family: family}
	if len(daddrs) == 0 {
		daddrs = []netip.Addr{{}} // an address no rule lists
	}
	var unknown *probeResult
	droppedBy := ""
	sampled := false
	for _, proto := range []string{"tcp", "udp"} {
		for _, iif := range ifaces {
			for _, daddr := range daddrs {
				ps, complete := lit.probes(family, proto, iif, daddr)
				sampled = sampled || !complete
				for _, p := range ps {
					p.budget = budget
					r := evaluateProbe(bcs, p)
					switch r.kind {
					case vAccept:
						f.Verdict = VerdictOpen
						f.Reason = fmt.Sprintf("%s %s open: %s (%s)", familyName(family), proto, r.where, p.String())
						return f
					case vUnknown:
						if unknown == nil {
							unknown = &r
						}
					case vDrop:
						if droppedBy == "" {
							droppedBy = r.where
						}
					}
				}
			}
		}
	}
	switch {
	case unknown != nil:
		f.Verdict = VerdictUnknown
		f.Reason = fmt.Sprintf("%s %s: cannot tell whether it is dropped: %s", familyName(family), unknown.p.proto, unknown.why)
	case sampled:
		f.Verdict = VerdictUnknown
		f.Reason = fmt.Sprintf("%s: the rules single out more source ports than the evaluator tries (%d): not every sender was probed", familyName(family), maxSportReps)
	default:
		f.Verdict = VerdictDeny
		f.Reason = familyName(family) + " inbound denied by default (" + droppedBy + ")"
	}
	return f
}
