package patches

import (
	"context"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// New returns the patches collector.
//
// Parser v3: automatic updates check the scheduler (timers, service) and
// managed preferences, and say Unknown when they cannot be read.
func New() collectors.Collector { return newCollector(time.Now) }

// newCollector returns the patches collector dating the age of pending
// advisories by now. Tests pass a fixed clock: parsers never read the clock.
// It reads the OS of the host, not of the machine running the agent, so a
// recorded snapshot of any OS replays anywhere.
func newCollector(now func() time.Time) collectors.ByOS {
	return collectors.ByOS{Signal: Name, Version: ParserVersion,
		Linux: func(ctx context.Context, host platform.Host) (collectors.Result, error) {
			return collectLinux(ctx, host, now())
		},
		Darwin: collectDarwin, Windows: collectWindows}
}
