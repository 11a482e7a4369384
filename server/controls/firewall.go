package controls

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/store"
)

// firewallParams tunes DC-FW-01.
type firewallParams struct {
	// RequireBlockAll makes a Mac pass only with the Application
	// Firewall's "block all incoming connections" (state 2). Off by
	// default: state 1 ("on") is what CIS macOS 2.2.1 and auditors accept
	// as enabled, and what managed Macs run.
	RequireBlockAll bool `json:"require_block_all"`
}

func newFirewall(raw json.RawMessage) (evaluator, error) {
	var p firewallParams
	if err := strictParams(raw, &p); err != nil {
		return nil, err
	}
	return func(in Input) Result { return checkFirewall(in, p) }, nil
}

// checkFirewall decides on the collector's verdict: deny passes, open
// fails, unknown stays unknown, each with the collector's reason (which
// names the rule that lets traffic in, or what could not be read).
func checkFirewall(in Input, params firewallParams) Result {
	p, o, r, ok := observed[evidence.FirewallPayload](in, evidence.Firewall)
	if !ok {
		return r
	}
	if p.Verdict == "" {
		return firewallV1(o, p)
	}
	reason := p.Reason
	if reason == "" {
		reason = "firewall verdict " + p.Verdict
	}
	switch p.Verdict {
	case evidence.FirewallVerdictDeny:
		if params.RequireBlockAll && isALF(p) && (p.BlockAll == nil || !*p.BlockAll) {
			state := "off"
			if p.BlockAll == nil {
				state = "unknown"
			}
			return decided(o, store.Fail, "policy requires the Application Firewall to block all incoming connections (block all: "+state+"): "+reason, p)
		}
		return decided(o, store.Pass, reason, p)
	case evidence.FirewallVerdictOpen:
		return decided(o, store.Fail, reason, p)
	case evidence.FirewallVerdictUnknown:
		return decided(o, store.Unknown, reason, p)
	}
	return decided(o, store.Unknown, fmt.Sprintf("firewall verdict %q not understood", p.Verdict), p)
}

func isALF(p evidence.FirewallPayload) bool {
	for _, b := range p.Backends {
		if b.Name == "alf" {
			return true
		}
	}
	return false
}

// firewallV1 judges a payload of an agent older than the verdict
// (firewall parser v1). Its Linux "inbound default deny" came from the
// chain policy and the last rule and could be true on hosts that accept
// every connection, so it never passes; its macOS reading of state 1 as
// "not default deny" was too strict, so ALF on passes; Windows profiles
// are judged as before (inbound rules were not read: noted in the reason).
func firewallV1(o store.Observation, p evidence.FirewallPayload) Result {
	switch {
	case isALF(p):
		for _, b := range p.Backends {
			if b.Name == "alf" {
				if b.Active {
					return decided(o, store.Pass, "Application Firewall on ("+b.Detail+"; agent with firewall parser v1)", p.Backends)
				}
				return decided(o, store.Fail, "Application Firewall off ("+b.Detail+")", p.Backends)
			}
		}
	case len(p.Backends) > 0 && strings.HasPrefix(p.Backends[0].Name, "windows:"):
		if p.Enabled && p.InboundDefaultDeny {
			return decided(o, store.Pass, "all profiles on with inbound default block (inbound rules not read by this agent's firewall parser v1: upgrade the agent)", p.Backends)
		}
		var off []string
		for _, b := range p.Backends {
			if !b.InboundDefaultDeny {
				off = append(off, b.Name+" ("+b.Detail+")")
			}
		}
		return decided(o, store.Fail, "inbound traffic accepted by default: "+strings.Join(off, "; "), p.Backends)
	}
	if !p.Enabled {
		return decided(o, store.Fail, "no active host firewall found (agent with firewall parser v1)", p.Backends)
	}
	if !p.InboundDefaultDeny {
		// v1 missed iptables-legacy rules, so this may be a false fail;
		// it is never a false pass.
		return decided(o, store.Fail, "firewall active but inbound traffic is accepted by default ("+p.DecidedBy+"; agent with firewall parser v1)", p.Backends)
	}
	return decided(o, store.Unknown, "collected by an agent whose firewall parser (v1) judged default deny from the chain policy and the last rule, "+
		"which can report deny on hosts that accept every inbound connection: upgrade the agent for a verdict", p.Backends)
}
