package patches

import (
	"context"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collector reads the patch level. Its Collect is defined per OS.
type collector struct {
	// now dates the age of pending advisories; nil means time.Now. Tests
	// set a fixed clock: parsers never read the clock.
	now func() time.Time
}

// New returns the patches collector.
func New() collectors.Collector { return collector{now: time.Now} }

// Name implements collectors.Collector.
func (collector) Name() string { return Name }

// ParserVersion implements collectors.Versioned.
//
// v3: automatic updates check the scheduler (timers, service) and managed
// preferences, and say Unknown when they cannot be read.
func (collector) ParserVersion() int { return ParserVersion }

// Collect implements collectors.Collector. It reads the OS of the host, not
// of the machine running the agent, so a recorded snapshot of any OS replays
// anywhere.
func (c collector) Collect(ctx context.Context, host platform.Host) (collectors.Result, error) {
	switch host.GOOS() {
	case "linux":
		now := time.Now
		if c.now != nil {
			now = c.now
		}
		return collectLinux(ctx, host, now())
	case "darwin":
		return collectDarwin(ctx, host)
	case "windows":
		return collectWindows(ctx, host)
	default:
		return collectors.Result{}, collectors.Unsupported(Name, host.GOOS())
	}
}
