//go:build linux

package platform

// DefaultAgentDataDir is where the agent keeps its identity and outbox.
func DefaultAgentDataDir() string { return "/var/lib/evident-agent" }
