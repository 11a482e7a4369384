//go:build !linux && !darwin && !windows

package platform

// DefaultAgentDataDir is where the agent keeps its identity and outbox.
func DefaultAgentDataDir() string { return "/var/lib/evident-agent" }

// DefaultAgentConfigFile is the agent's config file.
func DefaultAgentConfigFile() string { return "/etc/evident/agent.yaml" }
