//go:build !windows

package service

// SetRecovery is Windows-only: systemd and launchd take their restart
// policy from the unit and the plist.
func SetRecovery() error { return nil }
