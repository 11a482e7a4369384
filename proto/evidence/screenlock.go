package evidence

// ScreenLock names the screen lock collector.
const ScreenLock = "screenlock"

// ScreenLockParserVersion is the screenlock parser of today's agent.
//
//	v1: lock, delay and password on wake
//	v2 (GNOME): Enforced needs lock-delay locked too; disable-lock-screen
//	    and idle-activation-enabled are read; a non-GNOME session makes it
//	    unknown
const ScreenLockParserVersion = 2

// ScreenLockPayload is the screenlock collector's result.
type ScreenLockPayload struct {
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
