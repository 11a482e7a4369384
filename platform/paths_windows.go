//go:build windows

package platform

import (
	"os"
	"path/filepath"
)

// DefaultAgentDataDir is where the agent keeps its identity and outbox.
func DefaultAgentDataDir() string { return filepath.Join(programData(), "Evident", "agent") }

// DefaultAgentConfigFile is the agent's config file.
func DefaultAgentConfigFile() string { return filepath.Join(programData(), "Evident", "agent.yaml") }

func programData() string {
	if pd := os.Getenv("ProgramData"); pd != "" {
		return pd
	}
	return `C:\ProgramData`
}
