package secureboot

import (
	"context"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// Collect implements collectors.Collector.
func (collector) Collect(ctx context.Context, host platform.Host) (collectors.Result, error) {
	return collectLinux(ctx, host)
}
