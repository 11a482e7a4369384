package evidence

// TPM names the TPM presence collector.
const TPM = "tpm"

// TPMParserVersion is the tpm parser of today's agent.
//
//	v1: presence, version and devices
const TPMParserVersion = 1

// TPMPayload is the tpm collector's result.
type TPMPayload struct {
	Present bool        `json:"present"`
	Version string      `json:"version,omitempty"` // "2.0", "1.2"
	Devices []TPMDevice `json:"devices,omitempty"`
	// NotApplicable says why a platform cannot have a TPM at all (macOS),
	// as opposed to a machine that merely lacks one.
	NotApplicable string `json:"not_applicable,omitempty"`
}

// TPMDevice is one TPM character device.
type TPMDevice struct {
	Name         string `json:"name"` // tpm0
	Version      string `json:"version,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Description  string `json:"description,omitempty"`
}
