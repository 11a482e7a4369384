package tpm

import (
	"context"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collectDarwin reads a darwin host (live or a replayed snapshot). It has no build
// tag: parsers and collection are tested on every OS.
//
// Macs have no TPM. The Secure Enclave (Apple silicon, T2) protects keys
// but is not a TPM: it offers no PCRs, no TPM quotes and no TPM 2.0
// command interface, so the result is Present false (ok, not an error) and
// DC-TPM-01 is not applicable. Nothing is read from the host.
func collectDarwin(_ context.Context, _ platform.Host) (collectors.Result, error) {
	return collectors.Result{
		Payload: Payload{Present: false, NotApplicable: darwinNoTPM},
		Sources: []collectors.Source{{Kind: "api", Ref: "macOS",
			Excerpt: darwinNoTPM}},
	}, nil
}

const darwinNoTPM = "Macs have no TPM; the Secure Enclave is not a TPM (no PCRs, no TPM 2.0 quotes)"
