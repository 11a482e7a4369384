package evidence

import "time"

// Patches names the patch level collector.
const Patches = "patches"

// PatchesParserVersion is the patches parser of today's agent.
//
//	v1: pending updates, reboot, automatic update settings, OS release
//	v2: Index, the age of the package index
//	v3: AutoUpdates.Enabled also needs the job that installs updates to
//	    be scheduled (timers, service, managed preferences);
//	    AutoUpdates.Unknown when that cannot be read
const PatchesParserVersion = 3

// PatchesPayload is the patches collector's result.
type PatchesPayload struct {
	Manager                string    `json:"manager"` // "apt", "dnf", "yum", "zypper", "apk", ""
	OS                     OSRelease `json:"os"`
	PendingUpdates         int       `json:"pending_updates"`
	PendingSecurityUpdates int       `json:"pending_security_updates"`
	// PendingSecurity lists at most 50 pending security packages.
	PendingSecurity []Package `json:"pending_security,omitempty"`
	// LastSuccessfulUpdate is when the package index or packages were last
	// updated successfully, when the manager records it.
	LastSuccessfulUpdate *time.Time `json:"last_successful_update,omitempty"`
	// OldestPendingSecurityDays is how long the oldest pending security
	// update has been released, when the package metadata dates advisories
	// (dnf updateinfo, zypper patches).
	OldestPendingSecurityDays *int `json:"oldest_pending_security_days,omitempty"`
	// KernelRunning and KernelInstalled differ when a newer kernel waits for
	// a reboot.
	KernelRunning   string `json:"kernel_running,omitempty"`
	KernelInstalled string `json:"kernel_installed,omitempty"`
	RebootRequired  bool   `json:"reboot_required"`
	// RebootReason names the packages or file that say so.
	RebootReason string       `json:"reboot_reason,omitempty"`
	AutoUpdates  *AutoUpdates `json:"auto_updates,omitempty"`
	// Index is when the package index (or macOS's software catalog) was
	// last refreshed (parser v2). Nil from older agents, and on Windows,
	// whose installed-update date is judged instead.
	Index *PackageIndex `json:"package_index,omitempty"`
}

// Package is one pending update.
type Package struct {
	Name     string `json:"name"`
	Version  string `json:"version,omitempty"` // candidate version
	Origin   string `json:"origin,omitempty"`  // repository/suite, or advisory id
	Advisory string `json:"advisory,omitempty"`
	Severity string `json:"severity,omitempty"`
}

// OSRelease is the parsed /etc/os-release plus what Evident knows of its
// support window.
type OSRelease struct {
	ID         string `json:"id"`
	VersionID  string `json:"version_id,omitempty"`
	PrettyName string `json:"pretty_name,omitempty"`
	Codename   string `json:"codename,omitempty"`
	// EndOfLife is the end of security support, when known.
	EndOfLife *time.Time `json:"end_of_life,omitempty"`
	// Build is the OS build where the OS has one (macOS "24A335",
	// Windows "26100.2605" with the UBR).
	Build string `json:"build,omitempty"`
}

// AutoUpdates says whether the host installs updates by itself.
type AutoUpdates struct {
	// Enabled: updates are installed without anyone acting, and the job
	// that installs them is scheduled (parser v3 checks the scheduler).
	Enabled bool `json:"enabled"`
	// Unknown (parser v3): the configuration or the scheduler could not be
	// read; Enabled is then false and Detail says why.
	Unknown   bool   `json:"unknown,omitempty"`
	Mechanism string `json:"mechanism"` // "unattended-upgrades", "dnf-automatic", ...
	Detail    string `json:"detail,omitempty"`
}

// PackageIndex is when the package manager last refreshed the index it
// compares installed packages with. "No pending updates" read from an index
// that was not refreshed for weeks says nothing about today's advisories,
// so the server judges this age before it accepts a pass.
type PackageIndex struct {
	// Refreshed is the modification time of Source, when it could be read.
	Refreshed *time.Time `json:"refreshed,omitempty"`
	// Source names what decided Refreshed: a file path, or a setting.
	Source string `json:"source,omitempty"`
	// Error says why the age could not be read; Refreshed is then nil.
	Error string `json:"error,omitempty"`
}
