//go:build darwin

package platform

// DefaultAgentDataDir is where the agent keeps its identity and outbox.
func DefaultAgentDataDir() string { return "/Library/Application Support/Evident/agent" }
