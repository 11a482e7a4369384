//go:build !windows

package platform

import (
	"context"
	"errors"
	"fmt"
)

// WMI implements Host: only Windows has WMI.
func (l *Live) WMI(context.Context, string, string, any) error {
	return fmt.Errorf("WMI: %w", errors.ErrUnsupported)
}

// Registry implements Host: only Windows has a registry.
func (l *Live) Registry(string, string) (RegistryValue, error) {
	return RegistryValue{}, fmt.Errorf("registry: %w", errors.ErrUnsupported)
}
