package firewall

import (
	"context"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collector reads the host firewall state. Its Collect is defined per OS.
type collector struct{}

// New returns the firewall collector.
func New() collectors.Collector { return collector{} }

// Name implements collectors.Collector.
func (collector) Name() string { return Name }

// ParserVersion implements collectors.Versioned.
func (collector) ParserVersion() int { return 1 }

// Collect implements collectors.Collector. It reads the OS of the host, not
// of the machine running the agent, so a recorded snapshot of any OS replays
// anywhere.
func (collector) Collect(ctx context.Context, host platform.Host) (collectors.Result, error) {
	switch host.GOOS() {
	case "linux":
		return collectLinux(ctx, host)
	case "darwin":
		return collectDarwin(ctx, host)
	case "windows":
		return collectWindows(ctx, host)
	default:
		return collectors.Result{}, collectors.Unsupported(Name, host.GOOS())
	}
}
