package patches

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// Windows sources. Each query string lives in one constant so tests and
// host snapshots use the identical text.
const (
	cimv2Namespace = `root\CIMV2`
	hotfixQuery    = "SELECT HotFixID, InstalledOn, Description FROM Win32_QuickFixEngineering"
	winOSQuery     = "SELECT Caption, Version, BuildNumber FROM Win32_OperatingSystem"
	currentVersion = `SOFTWARE\Microsoft\Windows NT\CurrentVersion`
	auPolicyKey    = `SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU`
)

// hotfix is one Win32_QuickFixEngineering row. InstalledOn is a string in
// the class (not a CIM datetime) and its layout depends on the machine.
type hotfix struct {
	HotFixID    string
	InstalledOn string
	Description string
}

// winOS is one Win32_OperatingSystem row (the properties patches needs).
type winOS struct {
	Caption     string
	Version     string
	BuildNumber string
}

// collectWindows reads the installed hotfixes, the OS build and the
// Windows Update policy (live or a replayed snapshot). It has no build tag:
// parsers and collection are tested on every OS.
//
// Pending updates are not read: only the Windows Update Agent COM API
// (IUpdateSearcher) knows them, and the Host has no door to it. Manager is
// therefore left empty, so the server's DC-PATCH-01 says "unknown" rather
// than passing on a count of 0 that nobody measured; the end-of-life check,
// which needs only the build, still fails an unsupported release.
func collectWindows(ctx context.Context, host platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{OS: OSRelease{ID: "windows"}}

	var oses []winOS
	err := host.WMI(ctx, cimv2Namespace, winOSQuery, &oses)
	res.Sources = append(res.Sources, wmiSource(cimv2Namespace, winOSQuery, oses, err))
	if err != nil {
		return res, fmt.Errorf("read Win32_OperatingSystem: %w", err)
	}
	if len(oses) == 0 {
		return res, fmt.Errorf("Win32_OperatingSystem returned no rows")
	}
	reg := func(name string) (platform.RegistryValue, bool) {
		v, err := host.Registry(currentVersion, name)
		res.Sources = append(res.Sources, registrySource(currentVersion, name, v, err))
		return v, err == nil
	}
	var ubr, displayVersion, edition string
	if v, ok := reg("UBR"); ok && v.Type == "DWORD" {
		ubr = strconv.FormatUint(v.Int, 10)
	}
	if v, ok := reg("DisplayVersion"); ok {
		displayVersion = strings.TrimSpace(v.String)
	}
	if v, ok := reg("EditionID"); ok {
		edition = strings.TrimSpace(v.String)
	}
	p.OS = windowsRelease(oses[0], ubr, displayVersion, edition)

	var fixes []hotfix
	err = host.WMI(ctx, cimv2Namespace, hotfixQuery, &fixes)
	res.Sources = append(res.Sources, wmiSource(cimv2Namespace, hotfixQuery, fixes, err))
	var firstErr error
	if err != nil && !platform.IsNotExist(err) {
		firstErr = fmt.Errorf("read Win32_QuickFixEngineering: %w", err)
	}
	p.LastSuccessfulUpdate = newestHotfix(fixes)

	res.Sources = append(res.Sources, collectors.Source{Kind: "api", Ref: "Windows Update Agent (IUpdateSearcher)",
		Excerpt: "pending updates need the Windows Update Agent API (not read)"})

	p.AutoUpdates = windowsAutoUpdates(host, &res)
	res.Payload = p
	return res, firstErr
}

// windowsRelease builds the OS release from Win32_OperatingSystem and the
// CurrentVersion registry values. The major version comes from the build
// number: Caption is localized and the registry ProductName still says
// "Windows 10" on Windows 11.
func windowsRelease(o winOS, ubr, displayVersion, edition string) OSRelease {
	r := OSRelease{ID: "windows", PrettyName: strings.TrimSpace(o.Caption)}
	build, err := strconv.Atoi(strings.TrimSpace(o.BuildNumber))
	if err != nil {
		return r
	}
	r.Build = strconv.Itoa(build)
	if ubr != "" {
		r.Build += "." + ubr
	}
	major := "10"
	if build >= 22000 {
		major = "11"
	}
	if !strings.HasPrefix(strings.TrimSpace(o.Version), "10.") {
		major = "" // Windows 8.1 and older: no DisplayVersion, out of support
	}
	r.VersionID = strings.TrimSpace(major + " " + displayVersion)
	r.EndOfLife = windowsEndOfLife(build, edition)
	return r
}

// windowsEOL is the end of servicing of each Windows 10/11 feature update
// by build, for Home/Pro (and Pro Education, Pro for Workstations) and for
// Enterprise/Education, from Microsoft's lifecycle pages.
var windowsEOL = map[int]struct{ consumer, enterprise string }{
	19041: {"2021-12-14", "2021-12-14"}, // 10 2004
	19042: {"2022-05-10", "2023-05-09"}, // 10 20H2
	19043: {"2022-12-13", "2022-12-13"}, // 10 21H1
	19044: {"2023-06-13", "2024-06-11"}, // 10 21H2
	19045: {"2025-10-14", "2025-10-14"}, // 10 22H2
	22000: {"2023-10-10", "2024-10-08"}, // 11 21H2
	22621: {"2024-10-08", "2025-10-14"}, // 11 22H2
	22631: {"2025-11-11", "2026-11-10"}, // 11 23H2
	26100: {"2026-10-13", "2027-10-12"}, // 11 24H2
	26200: {"2027-10-12", "2028-10-10"}, // 11 25H2
}

// windowsEndOfLife returns the end of servicing of build for edition (the
// registry EditionID). LTSC ("EnterpriseS") and Server editions have their
// own, longer lifecycles and get no date; so do unknown builds. Builds of
// Windows 10 before 2004 (19041) ended servicing no later than 2004 did.
// An unknown edition gets the later (Enterprise) date: no false failure.
func windowsEndOfLife(build int, edition string) *time.Time {
	e := strings.ToLower(edition)
	if strings.HasSuffix(e, "enterprises") || strings.HasSuffix(e, "enterprisesn") || strings.HasPrefix(e, "server") {
		return nil
	}
	if build >= 10240 && build < 19041 {
		build = 19041
	}
	d, ok := windowsEOL[build]
	if !ok {
		return nil
	}
	date := d.enterprise
	switch {
	case e == "":
	case strings.HasPrefix(e, "core"), strings.HasPrefix(e, "professional"):
		// Home (Core, CoreN, CoreSingleLanguage, CoreCountrySpecific), Pro,
		// Pro Education (ProfessionalEducation), Pro for Workstations.
		date = d.consumer
	}
	t, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return nil
	}
	return &t
}

// newestHotfix returns the newest install date among fixes, or nil when
// none parses.
func newestHotfix(fixes []hotfix) *time.Time {
	var newest *time.Time
	for _, f := range fixes {
		t, ok := parseHotfixDate(f.InstalledOn)
		if ok && (newest == nil || t.After(*newest)) {
			newest = &t
		}
	}
	return newest
}

// parseHotfixDate parses Win32_QuickFixEngineering.InstalledOn. The value is
// a string whose layout depends on the machine: "11/12/2026" (M/d/yyyy, the
// common form), "12.11.2026" (d.M.yyyy), "2026-11-12", "20261112", or on old
// systems a 16-digit hex FILETIME. A slash date whose first field is above
// 12 is read as d/M/yyyy. Anything else is not a date: ok is false, never
// an error. The result is midnight UTC of the install day.
func parseHotfixDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 16 {
		if n, err := strconv.ParseUint(s, 16, 64); err == nil {
			// 100-ns intervals since 1601-01-01.
			const epochDiff = 11644473600 // seconds from 1601 to 1970
			sec := int64(n/10_000_000) - epochDiff
			t := time.Unix(sec, 0).UTC()
			return validDate(t.Year(), int(t.Month()), t.Day())
		}
	}
	if len(s) == 8 && isDigits(s) {
		y, _ := strconv.Atoi(s[:4])
		m, _ := strconv.Atoi(s[4:6])
		d, _ := strconv.Atoi(s[6:])
		return validDate(y, m, d)
	}
	s = strings.TrimSuffix(s, ".") // "12.11.2026." (some locales)
	var sep string
	for _, c := range []string{"/", ".", "-"} {
		if strings.Count(s, c) == 2 {
			sep = c
			break
		}
	}
	if sep == "" {
		return time.Time{}, false
	}
	parts := strings.Split(s, sep)
	if len(parts) != 3 {
		return time.Time{}, false
	}
	n := make([]int, 3)
	for i, p := range parts {
		if !isDigits(p) || len(p) > 4 {
			return time.Time{}, false
		}
		n[i], _ = strconv.Atoi(p)
	}
	if len(parts[0]) == 4 { // yyyy-M-d, yyyy/M/d, yyyy.M.d
		return validDate(n[0], n[1], n[2])
	}
	if len(parts[2]) != 4 && len(parts[2]) != 2 {
		return time.Time{}, false
	}
	y := n[2]
	if len(parts[2]) == 2 {
		y += 2000
	}
	switch sep {
	case "/":
		if n[0] > 12 {
			return validDate(y, n[1], n[0])
		}
		return validDate(y, n[0], n[1])
	default: // d.M.yyyy, d-M-yyyy
		return validDate(y, n[1], n[0])
	}
}

func validDate(y, m, d int) (time.Time, bool) {
	if y < 1990 || y > 2200 || m < 1 || m > 12 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d { // 31 February
		return time.Time{}, false
	}
	return t, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// wuauservKey is the Windows Update service; its Start value 4 means
// disabled (2 automatic, 3 manual: the default, trigger started).
const wuauservKey = `SYSTEM\CurrentControlSet\Services\wuauserv`

// windowsAutoUpdates reads the Windows Update group policy (AU key):
// NoAutoUpdate 1 disables automatic updates; AUOptions 4 (auto download and
// schedule the install) enables them; 2 (notify), 3 (download only), 5
// (local admin chooses) and 7 (notify to install) do not. Without a policy
// Windows installs updates automatically, as long as the Windows Update
// service is not disabled. A policy value of another type than DWORD, or
// an undocumented NoAutoUpdate, is Unknown: it is not taken as "no policy".
func windowsAutoUpdates(host platform.Host, res *collectors.Result) *AutoUpdates {
	au := &AutoUpdates{Mechanism: "windows-update"}
	type dword struct {
		v        uint64
		set, odd bool
	}
	read := func(key, name string) (dword, error) {
		v, err := host.Registry(key, name)
		res.Sources = append(res.Sources, registrySource(key, name, v, err))
		if err != nil {
			if platform.IsNotExist(err) {
				err = nil
			}
			return dword{}, err
		}
		return dword{v: v.Int, set: true, odd: v.Type != "DWORD"}, nil
	}
	no, err1 := read(auPolicyKey, "NoAutoUpdate")
	opt, err2 := read(auPolicyKey, "AUOptions")
	svc, err3 := read(wuauservKey, "Start")
	names := map[uint64]string{2: "notify before download", 3: "download, notify to install",
		4: "download and schedule install", 5: "local administrator chooses", 7: "download, notify to install, notify to restart"}
	switch {
	case err1 != nil || err2 != nil || err3 != nil:
		return nil // unreadable policy: the server says unknown
	case no.set && (no.odd || no.v > 1):
		au.Unknown, au.Detail = true, fmt.Sprintf("policy NoAutoUpdate is not a DWORD 0 or 1 (%d): what Windows makes of it is not known", no.v)
	case no.set && no.v == 1:
		au.Detail = "policy NoAutoUpdate=1: automatic updates disabled"
	case opt.set && opt.odd:
		au.Unknown, au.Detail = true, "policy AUOptions is not a DWORD: what Windows makes of it is not known"
	case svc.set && !svc.odd && svc.v == 4:
		au.Detail = "the Windows Update service (wuauserv) is disabled (Start=4): no update is installed"
	case !svc.set || svc.odd:
		au.Unknown, au.Detail = true, `HKLM\`+wuauservKey+`\Start not readable as a DWORD: whether the Windows Update service can run is not known`
	case opt.set:
		name, ok := names[opt.v]
		if !ok {
			name = "undocumented"
		}
		au.Enabled = opt.v == 4
		au.Detail = fmt.Sprintf("policy AUOptions=%d (%s)", opt.v, name)
	case no.set:
		au.Enabled = true
		au.Detail = "policy NoAutoUpdate=0, AUOptions not set: Windows default (automatic download and install)"
	default:
		au.Enabled = true
		au.Detail = "no policy: Windows default (automatic download and install)"
	}
	return au
}

// wmiSource records one WMI query and the rows it returned.
func wmiSource(namespace, query string, rows any, err error) collectors.Source {
	s := collectors.Source{Kind: "wmi", Ref: namespace + ": " + query}
	if err != nil {
		s.Error = err.Error()
		return s
	}
	b, _ := json.Marshal(rows)
	s.Excerpt = collectors.Excerpt(b)
	return s
}

// registrySource records one registry read; an absent value is evidence
// too (no policy), not an error.
func registrySource(key, name string, v platform.RegistryValue, err error) collectors.Source {
	s := collectors.Source{Kind: "registry", Ref: `HKLM\` + key + `\` + name}
	switch {
	case platform.IsNotExist(err):
		s.Excerpt = "absent"
	case err != nil:
		s.Error = err.Error()
	case v.Type == "DWORD" || v.Type == "QWORD":
		s.Excerpt = fmt.Sprintf("%s %d", v.Type, v.Int)
	case v.Type == "MULTI_SZ":
		s.Excerpt = collectors.Excerpt([]byte(v.Type + " " + strings.Join(v.Strings, "; ")))
	case v.Type == "BINARY":
		s.Excerpt = collectors.Excerpt([]byte(fmt.Sprintf("%s % x", v.Type, v.Binary)))
	default:
		s.Excerpt = collectors.Excerpt([]byte(v.Type + " " + v.String))
	}
	return s
}
