package secureboot

import (
	"errors"
	"fmt"
	"strings"
)

// sipStatus is the parsed output of `csrutil status`.
type sipStatus struct {
	// Enabled is true only for "enabled": a custom configuration has at
	// least one protection off.
	Enabled bool
	Custom  bool
	// Disabled lists the protections a custom configuration turns off.
	Disabled []string
	Line     string
}

// parseCsrutilStatus parses `csrutil status`:
//
//	System Integrity Protection status: enabled.
//	System Integrity Protection status: disabled.
//	System Integrity Protection status: unknown (Custom Configuration).
//	<blank>
//	Configuration:
//		Kext Signing: enabled
//		Filesystem Protections: disabled
//		...
func parseCsrutilStatus(b []byte) (sipStatus, error) {
	var s sipStatus
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(t, "System Integrity Protection status:"); ok {
			found = true
			s.Line = t
			rest = strings.ToLower(strings.TrimSpace(rest))
			switch {
			case strings.HasPrefix(rest, "enabled"):
				s.Enabled = true
			case strings.HasPrefix(rest, "disabled"):
			case strings.Contains(rest, "custom configuration"):
				s.Custom = true
			default:
				return s, fmt.Errorf("csrutil status: unknown status %q", rest)
			}
			continue
		}
		if k, v, ok := strings.Cut(t, ":"); ok && found && strings.TrimSpace(v) == "disabled" {
			s.Disabled = append(s.Disabled, strings.TrimSpace(k))
		}
	}
	if !found {
		return s, errors.New("csrutil status: no status line")
	}
	return s, nil
}

// parseSecureBootLine returns the "Secure Boot:" value of `system_profiler
// SPiBridgeDataType` on Intel Macs with a T2 chip ("Full Security",
// "Medium Security", "No Security"), or "" when there is none (no T2, or
// Apple silicon).
func parseSecureBootLine(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Secure Boot:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// t2Level maps the T2 Startup Security Utility setting to a level.
func t2Level(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "full security":
		return "full", true
	case "medium security":
		return "medium", true
	case "no security":
		return "none", true
	}
	return "", false
}
