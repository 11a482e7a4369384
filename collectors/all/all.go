// Package all lists every collector the agent ships, so the agent and the
// `collect` command build their Registry from one place.
package all

import (
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/collectors/antimalware"
	"github.com/evident-dev/evident/collectors/diskencryption"
	"github.com/evident-dev/evident/collectors/firewall"
	"github.com/evident-dev/evident/collectors/osinfo"
	"github.com/evident-dev/evident/collectors/patches"
	"github.com/evident-dev/evident/collectors/screenlock"
	"github.com/evident-dev/evident/collectors/secureboot"
	"github.com/evident-dev/evident/collectors/tpm"
)

// Default returns a new instance of every collector.
func Default() []collectors.Collector {
	return []collectors.Collector{
		antimalware.New(),
		diskencryption.New(),
		firewall.New(),
		osinfo.New(),
		patches.New(),
		screenlock.New(),
		secureboot.New(),
		tpm.New(),
	}
}
