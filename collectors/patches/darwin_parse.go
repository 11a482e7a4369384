package patches

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// swVers is the output of `sw_vers`.
type swVers struct{ ProductName, ProductVersion, BuildVersion, ProductVersionExtra string }

// parseSwVers parses "Key:<tabs>Value" lines of `sw_vers`.
func parseSwVers(b []byte) (swVers, error) {
	var v swVers
	for _, line := range strings.Split(string(b), "\n") {
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.TrimSpace(k) {
		case "ProductName":
			v.ProductName = val
		case "ProductVersion":
			v.ProductVersion = val
		case "BuildVersion":
			v.BuildVersion = val
		case "ProductVersionExtra": // Rapid Security Response, e.g. "(a)"
			v.ProductVersionExtra = val
		}
	}
	if v.ProductVersion == "" {
		return v, errors.New("sw_vers: no ProductVersion")
	}
	return v, nil
}

// macOSNames maps a major version to its marketing name.
var macOSNames = map[string]string{
	"10.15": "Catalina", "11": "Big Sur", "12": "Monterey", "13": "Ventura",
	"14": "Sonoma", "15": "Sequoia", "26": "Tahoe",
}

// macOSEOL: Apple publishes no end-of-life dates, but in practice it ships
// security updates for the three latest majors only. A major is treated as
// unsupported from the day its third successor was released (Monterey when
// Sequoia shipped, Ventura when Tahoe shipped). Majors still among the three
// latest get no date rather than a guess.
var macOSEOL = map[string]string{
	"10.15": "2022-10-24",
	"11":    "2023-09-26",
	"12":    "2024-09-16",
	"13":    "2025-09-15",
}

// macOSMajor is "14" for "14.6.1" and "10.15" for "10.15.7".
func macOSMajor(version string) string {
	parts := strings.Split(version, ".")
	if parts[0] == "10" && len(parts) > 1 {
		return "10." + parts[1]
	}
	return parts[0]
}

// macOSRelease turns sw_vers into an OSRelease.
func macOSRelease(v swVers) OSRelease {
	major := macOSMajor(v.ProductVersion)
	r := OSRelease{ID: "macos", VersionID: v.ProductVersion, Build: v.BuildVersion, Codename: macOSNames[major]}
	ver := v.ProductVersion
	if v.ProductVersionExtra != "" {
		ver += " " + v.ProductVersionExtra
	}
	name := v.ProductName
	if name == "" {
		name = "macOS"
	}
	r.PrettyName = strings.TrimSpace(strings.Join([]string{name, r.Codename, ver}, " "))
	r.PrettyName = strings.Join(strings.Fields(r.PrettyName), " ")
	if d, ok := macOSEOL[major]; ok {
		if t, err := time.Parse(time.DateOnly, d); err == nil {
			r.EndOfLife = &t
		}
	}
	return r
}

// swUpdate is one item of `softwareupdate --list`.
type swUpdate struct {
	Label, Title, Version, Action string
	Recommended                   bool
}

// Security reports whether an update counts as a security update. Apple
// does not flag updates as security or not in softwareupdate's output, so
// the rule is: the label or title mentions "Security" (Rapid Security
// Responses, Background Security Improvements, Security Updates), or the
// title is a macOS update (every macOS point release carries security
// fixes, per Apple's security release notes), or the update requires a
// restart (OS-level components). Safari, Xcode and Command Line Tools
// updates that need no restart count as pending but not as security.
//
// An upgrade to a newer major macOS (the next release offered to a fully
// patched Mac) is not a pending security update: installedMajor, when
// known (not ""), excludes macOS updates whose version has another major.
func (u swUpdate) Security(installedMajor string) bool {
	if installedMajor != "" && (strings.HasPrefix(u.Title, "macOS") || strings.HasPrefix(u.Label, "macOS")) && u.Version != "" {
		if macOSMajor(u.Version) != installedMajor {
			return false
		}
	}
	return strings.Contains(u.Label, "Security") || strings.Contains(u.Title, "Security") ||
		strings.HasPrefix(u.Title, "macOS") || strings.HasPrefix(u.Label, "macOS") ||
		strings.EqualFold(u.Action, "restart")
}

// parseSoftwareUpdateList parses `softwareupdate --list` (stdout and stderr
// together: "No new software available." goes to stderr). Items are
//
//   - Label: macOS Sonoma 14.6.1-23G93
//     Title: macOS Sonoma 14.6.1, Version: 14.6.1, Size: 1483264KiB, Recommended: YES, Action: restart,
//
// Output with neither items nor "No new software available." is an error
// (e.g. the catalog could not be reached).
func parseSoftwareUpdateList(b []byte) ([]swUpdate, error) {
	out := []swUpdate{}
	none := false
	for _, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "No new software available.":
			none = true
		case strings.HasPrefix(t, "* Label:"):
			out = append(out, swUpdate{Label: strings.TrimSpace(strings.TrimPrefix(t, "* Label:"))})
		case strings.HasPrefix(t, "Title:") && len(out) > 0:
			u := &out[len(out)-1]
			for _, f := range strings.Split(t, ", ") {
				k, v, ok := strings.Cut(f, ":")
				if !ok {
					continue
				}
				v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), ","))
				switch strings.TrimSpace(k) {
				case "Title":
					u.Title = v
				case "Version":
					u.Version = v
				case "Recommended":
					u.Recommended = strings.EqualFold(v, "YES")
				case "Action":
					u.Action = v
				}
			}
		case strings.HasPrefix(t, "* ") && !strings.Contains(t, ":"):
			// Pre-Catalina format: "* Label-Version" then a tab-indented
			// "Title (Version), SizeK [recommended] [restart]".
			out = append(out, swUpdate{Label: strings.TrimSpace(t[2:])})
		}
	}
	if len(out) == 0 && !none {
		return nil, fmt.Errorf("softwareupdate --list: unrecognised output %.120q", strings.TrimSpace(string(b)))
	}
	return out, nil
}

// parseDefaults parses the top-level scalar keys of `defaults read`
// output (old-style plist text: "{ Key = 1; Other = "text"; List = ( ... ); }").
// Nested values are skipped.
func parseDefaults(b []byte) (map[string]string, error) {
	s := strings.TrimSpace(string(b))
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("defaults read: not a dictionary: %.80q", s)
	}
	m := map[string]string{}
	depth := 0
	for _, line := range strings.Split(s, "\n") {
		t := strings.TrimSpace(line)
		if depth == 1 {
			if k, v, ok := strings.Cut(t, " = "); ok && strings.HasSuffix(v, ";") {
				m[strings.Trim(k, `"`)] = strings.Trim(strings.TrimSuffix(v, ";"), `"`)
			}
		}
		depth += strings.Count(t, "{") + strings.Count(t, "(") - strings.Count(t, "}") - strings.Count(t, ")")
	}
	return m, nil
}

// parseSoftwareUpdateDate parses "2024-08-20 09:12:33 +0000" as written by
// defaults for LastFullSuccessfulDate.
func parseSoftwareUpdateDate(s string) *time.Time {
	t, err := time.Parse("2006-01-02 15:04:05 -0700", s)
	if err != nil {
		return nil
	}
	t = t.UTC()
	return &t
}

func defaultsOn(m map[string]string, k string) bool {
	n, err := strconv.Atoi(m[k])
	return err == nil && n != 0 || strings.EqualFold(m[k], "true") || strings.EqualFold(m[k], "yes")
}
