// Package firewall reports whether a host firewall is enabled and whether a
// new inbound connection that no rule singles out is denied: on Linux by
// evaluating the rulesets the kernel has loaded (nftables, iptables-nft,
// iptables-legacy) the way the kernel walks them; the macOS Application
// Firewall; the Windows Defender Firewall profiles and inbound rules.
package firewall

import "github.com/evident-dev/evident/proto/evidence"

// Name is the collector name.
const Name = evidence.Firewall

// ParserVersion is the version of this parser: what it sends decodes on a
// server that knows it.
const ParserVersion = evidence.FirewallParserVersion

// Verdicts of Payload.Verdict.
const (
	VerdictDeny    = evidence.FirewallVerdictDeny    // unsolicited inbound connections are dropped
	VerdictOpen    = evidence.FirewallVerdictOpen    // some reach the host: Reason says which rule lets them in
	VerdictUnknown = evidence.FirewallVerdictUnknown // the collector cannot tell: Reason says why
)

// Payload is the collector's result.
type Payload = evidence.FirewallPayload

// Family is the Linux verdict for one address family.
type Family = evidence.FirewallFamily

// Backend is one firewall mechanism found on the host.
type Backend = evidence.FirewallBackend
