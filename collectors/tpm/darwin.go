package tpm

import (
	"context"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collectDarwin reads a darwin host (live or a replayed snapshot). It has no build
// tag: parsers and collection are tested on every OS.
func collectDarwin(_ context.Context, host platform.Host) (collectors.Result, error) {
	return collectors.Result{}, collectors.Unsupported(Name, host.GOOS())
}
