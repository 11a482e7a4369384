// Package every runs a server's periodic work: a function called at a
// fixed interval until its context ends, whose failures are logged once
// per outage (and the recovery once), not at every tick.
package every

import (
	"context"
	"log/slog"
	"time"
)

// Run calls f every interval until ctx ends. what names the work in the
// log ("folding the fleet counts").
func Run(ctx context.Context, interval time.Duration, log *slog.Logger, what string, f func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := f(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			log.Warn(what+" failed; retrying every "+interval.String(), "err", err)
			failing = true
		case err == nil && failing:
			log.Info(what + " works again")
			failing = false
		}
	}
}
