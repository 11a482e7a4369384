//go:build !linux

package tpm

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/google/go-tpm/tpm2/transport"
)

// openDevice is Linux only for now.
func openDevice(path string) (transport.TPMCloser, error) {
	return nil, fmt.Errorf("TPM device %s on %s: %w", path, runtime.GOOS, errors.ErrUnsupported)
}
