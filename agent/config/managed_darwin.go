//go:build darwin

package config

// SystemManaged is the managed preferences file macOS writes for the
// domain when a profile is installed at system scope.
func SystemManaged() Managed {
	return PlistFile("/Library/Managed Preferences/" + ManagedPrefsDomain + ".plist")
}
