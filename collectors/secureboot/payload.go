// Package secureboot reports whether the host booted with UEFI Secure Boot
// enforcing (Linux: efivars SecureBoot and SetupMode variables).
package secureboot

// Name is the collector name.
const Name = "secureboot"

// Payload is the collector's result.
type Payload struct {
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
