package patches

import (
	"context"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// softwareUpdatePrefs is the system-wide Software Update preferences domain.
// Settings pushed by MDM live in the managed preferences domain.
const softwareUpdatePrefs = "/Library/Preferences/com.apple.SoftwareUpdate"

// managedSoftwareUpdatePrefs holds what a configuration profile (MDM)
// enforces; its keys win over the local preferences.
const managedSoftwareUpdatePrefs = "/Library/Managed Preferences/com.apple.SoftwareUpdate"

// autoUpdateKeys must all be on for macOS to install updates by itself:
// check and download, install macOS updates (security point releases are
// macOS updates), and install Security Responses and system data files.
var autoUpdateKeys = []string{"AutomaticCheckEnabled", "AutomaticDownload", "AutomaticallyInstallMacOSUpdates", "CriticalUpdateInstall"}

// managedSoftwareUpdate reads the managed Software Update preferences. A
// domain that does not exist means no profile manages them (nil, ""); a
// read that fails otherwise returns why, and the result is then Unknown.
func (r *reader) managedSoftwareUpdate(ctx context.Context) (map[string]string, string) {
	res, err := r.run(ctx, nil, "defaults", "read", managedSoftwareUpdatePrefs)
	switch {
	case err != nil:
		return nil, managedSoftwareUpdatePrefs + " not read: " + err.Error()
	case res.ExitCode != 0 && strings.Contains(string(res.Stderr), "does not exist"):
		return nil, ""
	case res.ExitCode != 0:
		return nil, fmt.Sprintf("%s not readable (exit %d)", managedSoftwareUpdatePrefs, res.ExitCode)
	}
	m, err := parseDefaults(res.Stdout)
	if err != nil {
		r.sources[len(r.sources)-1].Error = err.Error()
		return nil, managedSoftwareUpdatePrefs + ": " + err.Error()
	}
	return m, ""
}

// collectDarwin reads a darwin host (live or a replayed snapshot). It has no build
// tag: parsers and collection are tested on every OS.
//
// sw_vers gives the release and build; `softwareupdate --list` the pending
// updates (see swUpdate.Security for what counts as security); `defaults
// read` of the Software Update preferences the automatic update settings.
// Automatic updates are Enabled when AutomaticCheckEnabled,
// AutomaticDownload, AutomaticallyInstallMacOSUpdates and
// CriticalUpdateInstall are all on, a managed (MDM) value winning over the
// local one; a key that is missing counts as off, even though macOS treats
// some missing keys as on, because nothing on the host then says so.
func collectDarwin(ctx context.Context, host platform.Host) (collectors.Result, error) {
	r := &reader{host: host}
	p := Payload{Manager: "softwareupdate"}
	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}

	if res, err := r.run(ctx, nil, "sw_vers"); err != nil {
		fail(fmt.Errorf("sw_vers: %w", err))
	} else if v, err := parseSwVers(res.Stdout); err != nil {
		r.sources[len(r.sources)-1].Error = err.Error()
		fail(err)
	} else {
		p.OS = macOSRelease(v)
	}

	both := func(res platform.Result) []byte { return append(append([]byte{}, res.Stdout...), res.Stderr...) }
	if res, err := r.run(ctx, both, "softwareupdate", "--list"); err != nil {
		fail(fmt.Errorf("softwareupdate --list: %w", err))
	} else if res.ExitCode != 0 {
		fail(fmt.Errorf("softwareupdate --list exited %d", res.ExitCode))
	} else if ups, err := parseSoftwareUpdateList(both(res)); err != nil {
		r.sources[len(r.sources)-1].Error = err.Error()
		fail(err)
	} else {
		p.PendingUpdates = len(ups)
		installed := ""
		if p.OS.VersionID != "" {
			installed = macOSMajor(p.OS.VersionID)
		}
		for _, u := range ups {
			if !u.Security(installed) {
				continue
			}
			p.PendingSecurityUpdates++
			if len(p.PendingSecurity) < 50 {
				name := u.Title
				if name == "" {
					name = u.Label
				}
				p.PendingSecurity = append(p.PendingSecurity, Package{Name: name, Version: u.Version, Origin: u.Label})
			}
		}
	}

	au := &AutoUpdates{Mechanism: "softwareupdate"}
	p.AutoUpdates = au
	p.Index = &PackageIndex{Error: softwareUpdatePrefs + " could not be read"}
	res, err := r.run(ctx, nil, "defaults", "read", softwareUpdatePrefs)
	switch {
	case err != nil:
		au.Detail = "defaults: " + err.Error()
	case res.ExitCode != 0:
		// "Domain ... does not exist": nothing was ever configured.
		au.Detail = fmt.Sprintf("%s not readable (exit %d): %s", softwareUpdatePrefs, res.ExitCode, strings.TrimSpace(firstLine(res.Stderr)))
	default:
		m, err := parseDefaults(res.Stdout)
		if err != nil {
			r.sources[len(r.sources)-1].Error = err.Error()
			au.Detail = err.Error()
			break
		}
		managed, mErr := r.managedSoftwareUpdate(ctx)
		var parts, off []string
		for _, k := range autoUpdateKeys {
			v, ok := m[k]
			if mv, mok := managed[k]; mok {
				v, ok = mv, true
				k += " (managed)"
			}
			if !ok {
				v = "unset"
			}
			parts = append(parts, k+"="+v)
			if !defaultsOn(map[string]string{k: v}, k) {
				off = append(off, k)
			}
		}
		au.Detail = strings.Join(parts, ", ")
		switch {
		case len(off) > 0:
		case mErr != "":
			au.Unknown = true
			au.Detail += "; " + mErr
		default:
			au.Enabled = true
		}
		p.LastSuccessfulUpdate = parseSoftwareUpdateDate(m["LastFullSuccessfulDate"])
		p.Index = darwinIndex(m)
	}
	return collectors.Result{Payload: p, Sources: r.sources}, firstErr
}
