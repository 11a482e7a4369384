package evidence

// DiskEncryption names the disk encryption collector.
const DiskEncryption = "diskencryption"

// DiskEncryptionParserVersion is the diskencryption parser of today's agent.
//
//	v1: volumes and their dm-crypt layers
//	v2: a LUKS volume is encrypted only when its header says the data
//	    segment is; State and Detail report re-encryption and suspension
const DiskEncryptionParserVersion = 2

// DiskEncryptionPayload is the diskencryption collector's result.
type DiskEncryptionPayload struct {
	Volumes []DiskVolume `json:"volumes"`
}

// DiskVolume is one block device that holds (or could hold) data at rest.
type DiskVolume struct {
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
