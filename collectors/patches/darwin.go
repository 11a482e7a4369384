package patches

import (
	"context"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// softwareUpdatePrefs is the system-wide Software Update preferences domain.
// Settings pushed by MDM live in the managed preferences domain instead
// and are not read here yet.
const softwareUpdatePrefs = "/Library/Preferences/com.apple.SoftwareUpdate"

// collectDarwin reads a darwin host (live or a replayed snapshot). It has no build
// tag: parsers and collection are tested on every OS.
//
// sw_vers gives the release and build; `softwareupdate --list` the pending
// updates (see swUpdate.Security for what counts as security); `defaults
// read` of the Software Update preferences the automatic update settings.
// Automatic updates are Enabled when AutomaticCheckEnabled and
// CriticalUpdateInstall (security responses and system data files) are
// both 1; a key that is missing counts as off, even though macOS treats
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
		var parts []string
		for _, k := range []string{"AutomaticCheckEnabled", "AutomaticDownload", "CriticalUpdateInstall", "AutomaticallyInstallMacOSUpdates"} {
			v, ok := m[k]
			if !ok {
				v = "unset"
			}
			parts = append(parts, k+"="+v)
		}
		au.Enabled = defaultsOn(m, "AutomaticCheckEnabled") && defaultsOn(m, "CriticalUpdateInstall")
		au.Detail = strings.Join(parts, ", ")
		p.LastSuccessfulUpdate = parseSoftwareUpdateDate(m["LastFullSuccessfulDate"])
	}
	return collectors.Result{Payload: p, Sources: r.sources}, firstErr
}
