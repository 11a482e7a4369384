//go:build darwin

package platform

// DefaultAgentDataDir is where the agent keeps its identity and outbox.
func DefaultAgentDataDir() string { return "/Library/Application Support/Evident/agent" }

// DefaultAgentConfigFile is the agent's config file.
func DefaultAgentConfigFile() string { return "/Library/Application Support/Evident/agent.yaml" }
