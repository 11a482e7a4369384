package diskencryption

import (
	"errors"
	"fmt"
	"strings"
)

// fileVault is the parsed output of `fdesetup status`.
type fileVault struct {
	// State is "encrypted", "encrypting", "decrypting" or "off".
	State string
	// Pending is set by "FileVault is Off, but will be enabled after the
	// next restart." (deferred enablement): still off until then.
	Pending bool
	// Detail is the tool's output on one line.
	Detail string
}

// parseFdesetupStatus parses `fdesetup status`. The first line is
// "FileVault is On." or "FileVault is Off." (optionally ", but will be
// enabled after the next restart."); while the volume converts, a line
// "Encryption in progress: Percent completed = 42" or "Decryption in
// progress: ..." follows (fdesetup then exits 2, which is not a failure).
func parseFdesetupStatus(b []byte) (fileVault, error) {
	var fv fileVault
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return fv, errors.New("fdesetup status: empty output")
	}
	fv.Detail = strings.Join(lines, " ")
	on, known := false, false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "FileVault is On"):
			on, known = true, true
		case strings.HasPrefix(l, "FileVault is Off"):
			on, known = false, true
			fv.Pending = strings.Contains(l, "will be enabled after the next restart")
		case strings.HasPrefix(l, "Encryption in progress"):
			fv.State = "encrypting"
		case strings.HasPrefix(l, "Decryption in progress"):
			fv.State = "decrypting"
		}
	}
	if !known {
		return fv, fmt.Errorf("fdesetup status: unrecognised output %.80q", fv.Detail)
	}
	if fv.State == "" {
		fv.State = "off"
		if on {
			fv.State = "encrypted"
		}
	}
	return fv, nil
}

// apfsVolume is one volume of `diskutil apfs list -plist`.
type apfsVolume struct {
	Device    string // disk3s5
	Name      string // "Macintosh HD - Data"
	Container string // disk3
	Roles     []string
	// FileVault is the volume's FileVault flag: the volume key is wrapped
	// by a user password (on Apple silicon and T2 every internal volume is
	// also hardware-encrypted, so Encryption alone says nothing).
	FileVault bool
	// Encryption is the APFS "Encryption" flag.
	Encryption bool
	Locked     bool
}

// parseAPFSList extracts the volumes of `diskutil apfs list -plist`.
func parseAPFSList(b []byte) ([]apfsVolume, error) {
	v, err := parsePlist(b)
	if err != nil {
		return nil, fmt.Errorf("diskutil apfs list: %w", err)
	}
	root, ok := plistDict(v)
	if !ok {
		return nil, errors.New("diskutil apfs list: top level is not a dict")
	}
	cs, ok := root["Containers"].([]any)
	if !ok {
		return nil, errors.New(`diskutil apfs list: no "Containers" array`)
	}
	out := []apfsVolume{}
	for _, c := range cs {
		cd, ok := plistDict(c)
		if !ok {
			continue
		}
		for _, vv := range plistArray(cd, "Volumes") {
			vd, ok := plistDict(vv)
			if !ok {
				continue
			}
			av := apfsVolume{
				Device:    plistString(vd, "DeviceIdentifier"),
				Name:      plistString(vd, "Name"),
				Container: plistString(cd, "ContainerReference"),
				Roles:     plistStrings(vd, "Roles"),
			}
			av.FileVault, _ = plistBool(vd, "FileVault")
			av.Encryption, _ = plistBool(vd, "Encryption")
			av.Locked, _ = plistBool(vd, "Locked")
			if av.Device == "" {
				return nil, errors.New("diskutil apfs list: volume without DeviceIdentifier")
			}
			out = append(out, av)
		}
	}
	return out, nil
}

// darwinExempt says why a volume with these APFS roles does not hold user
// data at rest, or "" when it does.
func darwinExempt(roles []string) (role, reason string) {
	for _, r := range roles {
		switch r {
		case "System":
			return "system", "sealed system volume: a signed, read-only snapshot of the OS with no user data"
		case "Preboot":
			return "preboot", "Preboot volume: boot loaders and FileVault unlock resources, no user data"
		case "Recovery":
			return "recovery", "Recovery volume: the recoveryOS image, no user data"
		case "VM":
			return "swap", "VM volume: swap, which macOS always encrypts with an ephemeral key"
		case "Update":
			return "update", "Update volume: staged OS updates, no user data"
		case "Hardware", "xART", "Baseband", "Installer", "Prelogin", "Enterprise", "Backup", "Sidecar":
			return strings.ToLower(r), r + " volume: system-managed, no user data"
		}
	}
	return "", ""
}
