//go:build !linux

package tpm

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/google/go-tpm/tpm2/transport"
)

// defaultEventLog is empty: outside Linux only the platform TPM (through
// go-attestation) knows where its event log is.
const defaultEventLog = ""

// openDevice is Linux only: elsewhere the platform TPM is opened with the
// empty spec.
func openDevice(path string) (transport.TPMCloser, error) {
	return nil, fmt.Errorf("TPM device %s on %s: %w", path, runtime.GOOS, errors.ErrUnsupported)
}
