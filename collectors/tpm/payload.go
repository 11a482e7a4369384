// Package tpm reports whether a TPM is present and its version
// (/sys/class/tpm on Linux). Attestation with quotes comes in a later issue.
package tpm

// Name is the collector name.
const Name = "tpm"

// Payload is the collector's result.
type Payload struct {
	Present bool     `json:"present"`
	Version string   `json:"version,omitempty"` // "2.0", "1.2"
	Devices []Device `json:"devices,omitempty"`
	// NotApplicable says why a platform cannot have a TPM at all (macOS),
	// as opposed to a machine that merely lacks one.
	NotApplicable string `json:"not_applicable,omitempty"`
}

// Device is one TPM character device.
type Device struct {
	Name         string `json:"name"` // tpm0
	Version      string `json:"version,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Description  string `json:"description,omitempty"`
}
