// Package diskencryption reports, for every fixed volume, whether it is
// encrypted at rest and how (LUKS/dm-crypt on Linux; FileVault and BitLocker
// in later issues), and which volumes are exempt and why.
package diskencryption

// Name is the collector name.
const Name = "diskencryption"

// Payload is the collector's result.
type Payload struct {
	Volumes []Volume `json:"volumes"`
}

// Volume is one block device that holds (or could hold) data at rest.
type Volume struct {
	Device      string   `json:"device"`                // e.g. /dev/nvme0n1p3
	Mountpoints []string `json:"mountpoints,omitempty"` // where it is mounted (through any dm layers)
	FSType      string   `json:"fstype,omitempty"`
	Role        string   `json:"role"` // "system" (mounts /), "data", "swap"
	Encrypted   bool     `json:"encrypted"`
	// Method is how it is encrypted: "LUKS1", "LUKS2", "PLAIN", "BITLK",
	// "TCRYPT" (dm-crypt uuid prefix), or an OS method name.
	Method string `json:"method,omitempty"`
	// Chain is the device stack from the mounted device down to the disk,
	// e.g. ["dm-1 (LVM)", "dm-0 (CRYPT-LUKS2)", "sda3"].
	Chain []string `json:"chain,omitempty"`
	// Exempt volumes do not count toward the control: removable media,
	// pseudo/virtual filesystems, read-only images.
	Exempt       bool   `json:"exempt,omitempty"`
	ExemptReason string `json:"exempt_reason,omitempty"`
	// State refines Encrypted where the OS reports a transition:
	// "encrypted", "encrypting", "decrypting", "paused" (BitLocker
	// protection suspended), "off", or "" when nothing more is known.
	// Encrypted is true only for a volume fully encrypted with protection
	// on.
	State string `json:"state,omitempty"`
	// Detail is a one-line explanation from the OS tool, e.g. "FileVault is
	// Off, but will be enabled after the next restart."
	Detail string `json:"detail,omitempty"`
}
