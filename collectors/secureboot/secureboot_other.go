//go:build !linux

package secureboot

import (
	"context"
	"errors"
	"fmt"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// Collect implements collectors.Collector.
func (collector) Collect(context.Context, platform.Host) (collectors.Result, error) {
	return collectors.Result{}, fmt.Errorf("%s: %w", Name, errors.ErrUnsupported)
}
