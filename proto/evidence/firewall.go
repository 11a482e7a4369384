package evidence

// Firewall names the firewall collector.
const Firewall = "firewall"

// FirewallParserVersion is the firewall parser of today's agent.
//
//	v1: Enabled and InboundDefaultDeny from chain policies and profiles
//	v2: Verdict and Reason from the ruleset the kernel walks (Linux), the
//	    Application Firewall state (macOS), profiles and inbound rules
//	    (Windows); Families, BlockAll, Stealth, OpenRules
const FirewallParserVersion = 2

// Verdicts of FirewallPayload.Verdict.
const (
	FirewallVerdictDeny    = "deny"    // unsolicited inbound connections are dropped
	FirewallVerdictOpen    = "open"    // some reach the host: Reason says which rule lets them in
	FirewallVerdictUnknown = "unknown" // the collector cannot tell: Reason says why
)

// FirewallPayload is the firewall collector's result.
type FirewallPayload struct {
	// Enabled is true when at least one backend filters inbound traffic.
	Enabled bool `json:"enabled"`
	// InboundDefaultDeny is true only when Verdict is "deny".
	InboundDefaultDeny bool `json:"inbound_default_deny"`
	// Verdict is deny, open or unknown (parser version 2 and later; empty
	// in payloads of older agents).
	Verdict string `json:"verdict,omitempty"`
	// Reason is the one-line explanation of Verdict an auditor reads, e.g.
	// "IPv4 tcp open: table inet f chain input handle 4: accept with no match".
	Reason string `json:"reason,omitempty"`
	// Families holds the Linux verdict per address family (ip, ip6).
	Families []FirewallFamily `json:"families,omitempty"`
	// BlockAll and Stealth are facts of the macOS Application Firewall:
	// "block all incoming connections" (state 2) and stealth mode.
	BlockAll *bool `json:"block_all,omitempty"`
	Stealth  *bool `json:"stealth,omitempty"`
	// OpenRules lists Windows inbound allow rules that open every port to
	// every address for every program, on every profile.
	OpenRules []string `json:"open_rules,omitempty"`
	// DecidedBy names the backend whose state decided the two fields above.
	DecidedBy string            `json:"decided_by,omitempty"`
	Backends  []FirewallBackend `json:"backends"`
}

// FirewallFamily is the Linux verdict for one address family: what happens
// to a new TCP and a new UDP connection to a port no rule lists, from an
// address no rule lists, on a non-loopback interface.
type FirewallFamily struct {
	Family  string `json:"family"` // "ip" or "ip6"
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

// FirewallBackend is one firewall mechanism found on the host.
type FirewallBackend struct {
	Name               string `json:"name"` // "nftables", "iptables-legacy", "ip6tables-legacy", "ufw", "firewalld", "alf", "pf", "windows:Domain"
	Active             bool   `json:"active"`
	InboundDefaultDeny bool   `json:"inbound_default_deny"`
	// Detail is a one-line human explanation, e.g.
	// "table inet filter chain input: hook input policy drop".
	Detail string `json:"detail,omitempty"`
}
