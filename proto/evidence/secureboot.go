package evidence

// SecureBoot names the Secure Boot collector.
const SecureBoot = "secureboot"

// SecureBootParserVersion is the secureboot parser of today's agent.
//
//	v1: UEFI, the SecureBoot and SetupMode variables, the macOS policy
//	v2: shim's MokSBStateRT (ShimValidation); efivar values other than
//	    0 and 1 are refused
const SecureBootParserVersion = 2

// SecureBootPayload is the secureboot collector's result.
type SecureBootPayload struct {
	// UEFI is false on legacy BIOS boots and most VMs without OVMF; Secure
	// Boot is then not applicable rather than failed.
	UEFI bool `json:"uefi"`
	// Enabled is the SecureBoot variable (nil when unreadable).
	Enabled *bool `json:"enabled,omitempty"`
	// SetupMode is the SetupMode variable: in setup mode keys are not
	// enforced even if SecureBoot reads 1.
	SetupMode *bool `json:"setup_mode,omitempty"`
	// ShimValidation (Linux, parser v2) is false when shim's MokSBStateRT
	// says validation is disabled (`mokutil --disable-validation`): the
	// firmware enforces, but the bootloader and kernel are not verified.
	// Nil from older agents and other OSes.
	ShimValidation *bool `json:"shim_validation,omitempty"`
	// Level is the boot security policy where the OS names one (Apple
	// silicon: "full", "reduced", "permissive").
	Level string `json:"level,omitempty"`
	// SIP is macOS System Integrity Protection (nil elsewhere).
	SIP *bool `json:"sip,omitempty"`
	// Detail is a one-line explanation from the OS tool.
	Detail string `json:"detail,omitempty"`
}
