// Package firewall reports whether a host firewall is enabled and whether
// inbound traffic is denied by default (nftables, iptables, ufw, firewalld on
// Linux; later the macOS Application Firewall/pf and Windows profiles).
package firewall

// Name is the collector name.
const Name = "firewall"

// Payload is the collector's result.
type Payload struct {
	// Enabled is true when at least one backend filters inbound traffic.
	Enabled bool `json:"enabled"`
	// InboundDefaultDeny is true when inbound traffic that matches no
	// accept rule is dropped or rejected (IPv4, and IPv6 when present).
	InboundDefaultDeny bool `json:"inbound_default_deny"`
	// DecidedBy names the backend whose state decided the two fields above.
	DecidedBy string    `json:"decided_by,omitempty"`
	Backends  []Backend `json:"backends"`
}

// Backend is one firewall mechanism found on the host.
type Backend struct {
	Name               string `json:"name"` // "nftables", "iptables", "ip6tables", "ufw", "firewalld"
	Active             bool   `json:"active"`
	InboundDefaultDeny bool   `json:"inbound_default_deny"`
	// Detail is a one-line human explanation, e.g.
	// "table inet filter chain input: hook input policy drop".
	Detail string `json:"detail,omitempty"`
}
