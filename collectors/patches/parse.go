package patches

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxListed bounds Payload.PendingSecurity.
const maxListed = 50

// parseOSRelease parses /etc/os-release (os-release(5)) and looks up the
// end of security support.
func parseOSRelease(b []byte) OSRelease {
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `"'`)
		}
		kv[k] = v
	}
	r := OSRelease{ID: kv["ID"], VersionID: kv["VERSION_ID"], PrettyName: kv["PRETTY_NAME"], Codename: kv["VERSION_CODENAME"]}
	r.EndOfLife = endOfLife(r.ID, r.VersionID)
	return r
}

// eol is the end of security support of releases Evident is sure about.
// Debian: end of Debian LTS (security updates are still published to the
// security archive until then). Ubuntu: end of standard support (ESM is a
// separate subscription). RHEL: end of maintenance support. Fedora: EOL
// date. Unknown releases get no date rather than a guess.
var eol = map[string]string{
	"debian 10":    "2024-06-30",
	"debian 11":    "2026-08-31",
	"debian 12":    "2028-06-30",
	"debian 13":    "2030-06-30",
	"ubuntu 20.04": "2025-05-31",
	"ubuntu 22.04": "2027-06-30",
	"ubuntu 24.04": "2029-05-31",
	"rhel 8":       "2029-05-31",
	"rhel 9":       "2032-05-31",
	"fedora 39":    "2024-11-26",
	"fedora 40":    "2025-05-13",
	// Alpine: end of support of the release branch (alpinelinux.org/releases).
	"alpine 3.18": "2025-05-09",
	"alpine 3.19": "2025-11-01",
	"alpine 3.20": "2026-04-01",
	"alpine 3.21": "2026-11-01",
}

func endOfLife(id, version string) *time.Time {
	switch id {
	case "rhel": // VERSION_ID is "9.4": support is per major
		version, _, _ = strings.Cut(version, ".")
	case "alpine": // VERSION_ID is "3.20.3": support is per major.minor
		if f := strings.SplitN(version, ".", 3); len(f) >= 2 {
			version = f[0] + "." + f[1]
		}
	}
	d, ok := eol[id+" "+version]
	if !ok {
		return nil
	}
	t, err := time.Parse(time.DateOnly, d)
	if err != nil {
		return nil
	}
	return &t
}

// aptUpdate is one "Inst" line of an apt-get simulation.
type aptUpdate struct {
	Name, Current, Candidate string
	Origins                  []string // "Debian-Security:12/oldstable-security"
	Security                 bool
}

// instRE matches apt-get -s lines such as
//
//	Inst libssl3 [3.0.19-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64]) []
//
// The [current] part is missing for packages newly installed as
// dependencies.
var instRE = regexp.MustCompile(`^Inst (\S+)(?: \[([^\]]*)\])? \((\S+) (.*) \[[^\]]+\]\)`)

// parseAptSimulation parses `apt-get -s dist-upgrade` output. Only
// upgrades of installed packages are returned (new dependencies are not
// pending updates). Output without a single Inst or the "0 upgraded"
// summary is an error: it is not a simulation.
func parseAptSimulation(b []byte) ([]aptUpdate, error) {
	var out []aptUpdate
	sawSummary := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, " upgraded, ") && strings.Contains(line, " newly installed") {
			sawSummary = true
		}
		m := instRE.FindStringSubmatch(line)
		if m == nil || m[2] == "" {
			continue
		}
		u := aptUpdate{Name: m[1], Current: m[2], Candidate: m[3]}
		for _, o := range strings.Split(m[4], ", ") {
			o = strings.TrimSpace(o)
			u.Origins = append(u.Origins, o)
			if isSecurityOrigin(o) {
				u.Security = true
			}
		}
		out = append(out, u)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse apt simulation: %w", err)
	}
	if len(out) == 0 && !sawSummary {
		return nil, errors.New("parse apt simulation: no Inst lines and no summary line")
	}
	return out, nil
}

// isSecurityOrigin reports whether an apt origin ("Debian-Security:12/
// bookworm-security", "Ubuntu:22.04/jammy-security") is a security suite.
func isSecurityOrigin(o string) bool {
	l := strings.ToLower(o)
	return strings.Contains(l, "-security") || strings.HasPrefix(l, "debian-security")
}

// parseAptHistory returns the End-Date of the last transaction in
// /var/log/apt/history.log that upgraded packages. A transaction without
// an End-Date did not finish and does not count. Times are local to the
// host; without a zone in the log they are read as UTC.
func parseAptHistory(b []byte, loc *time.Location) *time.Time {
	var last *time.Time
	upgraded := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "Start-Date:"):
			upgraded = false
		case strings.HasPrefix(line, "Upgrade:"):
			upgraded = true
		case strings.HasPrefix(line, "End-Date:") && upgraded:
			v := strings.Join(strings.Fields(strings.TrimPrefix(line, "End-Date:")), " ")
			t, err := time.ParseInLocation("2006-01-02 15:04:05", v, loc)
			if err == nil && (last == nil || t.After(*last)) {
				last = &t
			}
		}
	}
	return last
}

// periodicEnabled: apt reads the value as a number of days; "0" or "" is off.
func periodicEnabled(v string) bool {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return strings.EqualFold(strings.TrimSpace(v), "always")
	}
	return n > 0
}

// dnfAdvisory is one line of `dnf -q updateinfo list --security`:
//
//	FEDORA-2024-1a2b3c4d5e Important/Sec. openssl-libs-1:3.1.4-2.fc39.x86_64
type dnfAdvisory struct {
	ID, Severity, Package string
}

// parseDnfUpdateinfo parses `dnf -q updateinfo list --security` output.
func parseDnfUpdateinfo(b []byte) []dnfAdvisory {
	var out []dnfAdvisory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || !strings.Contains(f[1], "/") && !strings.HasSuffix(f[1], "Sec.") {
			continue
		}
		sev, _, _ := strings.Cut(f[1], "/")
		out = append(out, dnfAdvisory{ID: f[0], Severity: sev, Package: f[2]})
	}
	return out
}

// parseDnfUpdateinfoDates returns the oldest advisory date in `dnf -q
// updateinfo info --security` output. Each advisory has an "Issued" line
// (dnf5, and dnf4 on RHEL) and/or an "Updated" line (dnf4): the Issued
// dates are used when there are any, else the Updated ones (an advisory is
// at least as old as its last update). Values are "2006-01-02 15:04:05",
// read as UTC, or a bare date.
func parseDnfUpdateinfoDates(b []byte) *time.Time {
	// Each advisory ("Update ID:" starts one) is dated by its Issued
	// line, else its Updated line. One without a date makes the oldest
	// unknown: the age of the dated ones alone could be too young.
	type block struct{ issued, updated *time.Time }
	blocks := []*block{{}}
	started := false
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		cur := blocks[len(blocks)-1]
		var dst **time.Time
		switch strings.TrimSpace(k) {
		case "Update ID":
			if started {
				blocks = append(blocks, &block{})
			}
			started = true
			continue
		case "Issued":
			dst = &cur.issued
		case "Updated":
			dst = &cur.updated
		default:
			continue
		}
		started = true
		v = strings.Join(strings.Fields(v), " ")
		for _, layout := range []string{time.DateTime, time.DateOnly} {
			if t, err := time.Parse(layout, v); err == nil {
				if *dst == nil || t.Before(**dst) {
					*dst = &t
				}
				break
			}
		}
	}
	if !started {
		return nil
	}
	var oldest *time.Time
	for _, bl := range blocks {
		d := bl.issued
		if d == nil {
			d = bl.updated
		}
		if d == nil {
			return nil
		}
		if oldest == nil || d.Before(*oldest) {
			oldest = d
		}
	}
	return oldest
}

// parseDnfCheckUpdate parses `dnf -q check-update` output (exit code 100
// when updates are available): "name.arch  version  repo" rows; the
// "Obsoleting Packages" section that may follow is not counted.
func parseDnfCheckUpdate(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Obsoleting") {
			break
		}
		f := strings.Fields(line)
		if len(f) != 3 || strings.HasPrefix(line, " ") || !strings.Contains(f[0], ".") {
			continue
		}
		out = append(out, f[0])
	}
	return out
}

// parseDnfRPMLog returns the time of the last package upgrade recorded in
// /var/log/dnf.rpm.log ("2024-05-01T10:00:00+0000 SUBDEBUG Upgrade: ...").
func parseDnfRPMLog(b []byte) *time.Time {
	var last *time.Time
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[2], "Upgrade") {
			continue
		}
		for _, layout := range []string{"2006-01-02T15:04:05-0700", time.RFC3339} {
			if t, err := time.Parse(layout, f[0]); err == nil {
				if last == nil || t.After(*last) {
					last = &t
				}
				break
			}
		}
	}
	return last
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "yes", "true", "on":
		return true
	}
	return false
}

// securityPackages turns apt updates into the bounded PendingSecurity list.
func securityPackages(us []aptUpdate) (n int, list []Package) {
	for _, u := range us {
		if !u.Security {
			continue
		}
		n++
		if len(list) < maxListed {
			origin := ""
			for _, o := range u.Origins {
				if isSecurityOrigin(o) {
					origin = o
					break
				}
			}
			list = append(list, Package{Name: u.Name, Version: u.Candidate, Origin: origin})
		}
	}
	return n, list
}

// dnfSecurityPackages groups advisories by package (one package may be
// fixed by several advisories), bounded and sorted.
func dnfSecurityPackages(as []dnfAdvisory) (n int, list []Package) {
	seen := map[string]bool{}
	for _, a := range as {
		if seen[a.Package] {
			continue
		}
		seen[a.Package] = true
		if len(list) < maxListed {
			list = append(list, Package{Name: a.Package, Advisory: a.ID, Severity: a.Severity})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return len(seen), list
}
