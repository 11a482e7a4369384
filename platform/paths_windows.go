//go:build windows

package platform

import (
	"os"
	"path/filepath"
)

// DefaultAgentDataDir is where the agent keeps its identity and outbox.
func DefaultAgentDataDir() string {
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, "Evident", "agent")
}
