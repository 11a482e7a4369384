package secureboot

import (
	"context"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collectWindows reads a windows host (live or a replayed snapshot). It has no build
// tag: parsers and collection are tested on every OS.
func collectWindows(_ context.Context, host platform.Host) (collectors.Result, error) {
	return collectors.Result{}, collectors.Unsupported(Name, host.GOOS())
}
