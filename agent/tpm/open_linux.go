//go:build linux

package tpm

import (
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// defaultEventLog is where the kernel exposes the TCG firmware event log.
const defaultEventLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

// openDevice opens a TPM character device such as /dev/tpmrm0.
func openDevice(path string) (transport.TPMCloser, error) {
	return linuxtpm.Open(path)
}
