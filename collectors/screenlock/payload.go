// Package screenlock reports whether the screen locks after inactivity and
// asks for a password on wake: GNOME's dconf system policy on Linux desktops
// (servers without a graphical session are not applicable), sysadminctl and
// the managed screensaver preferences on macOS, and the machine inactivity
// limit policy on Windows.
package screenlock

// Name is the collector name.
const Name = "screenlock"

// Payload is the collector's result.
type Payload struct {
	// Applicable is false on hosts without a local graphical session.
	Applicable bool `json:"applicable"`
	// Enabled: the screen locks after inactivity (nil when unknown).
	Enabled *bool `json:"enabled,omitempty"`
	// IdleSeconds is the inactivity before the screen locks, when known.
	IdleSeconds *int `json:"idle_seconds,omitempty"`
	// PasswordOnWake: unlocking needs the user's password (nil when
	// unknown).
	PasswordOnWake *bool `json:"password_on_wake,omitempty"`
	// Enforced: set by a system or MDM policy the user cannot change.
	Enforced  bool   `json:"enforced"`
	Mechanism string `json:"mechanism,omitempty"` // "gnome-dconf", "macos", "windows-policy"
	Detail    string `json:"detail,omitempty"`
}
