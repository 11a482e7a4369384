//go:build !cgo

package tpm

import (
	"os"
	"testing"
)

// The simulator tests need cgo (go-tpm-tools' simulator is C). Under CI
// their absence is a failure, not a quiet skip.
func TestSimulatorNeedsCgo(t *testing.T) {
	if os.Getenv("CI") == "true" {
		t.Fatal("cgo is disabled (no gcc?): the TPM simulator tests cannot run; install gcc and libssl-dev")
	}
	t.Skip("cgo disabled: TPM simulator tests not built")
}
