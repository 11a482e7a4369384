package patches

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func date(s string) *time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func TestParseHotfixDate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"11/12/2026", "2026-11-12"}, // M/d/yyyy
		{"1/5/2026", "2026-01-05"},
		{" 11/12/2026 ", "2026-11-12"},
		{"25/11/2026", "2026-11-25"}, // first field > 12: d/M/yyyy
		{"12/11/26", "2026-12-11"},
		{"12.11.2026", "2026-11-12"}, // d.M.yyyy
		{"2.1.2026", "2026-01-02"},
		{"12.11.2026.", "2026-11-12"},
		{"12-11-2026", "2026-11-12"},
		{"2026-11-12", "2026-11-12"},
		{"2026/11/12", "2026-11-12"},
		{"20261112", "2026-11-12"},
		{"01ce8280948cc000", "2013-07-17"}, // FILETIME hex
		{"", ""},
		{"n/a", ""},
		{"2/30/2026", ""},
		{"13/13/2026", ""},
		{"11/12/2026 10:00", ""},
		{"99999999", ""},
		{"11/12/126", ""},
		{"zzzzzzzzzzzzzzzz", ""},
		{"1.1.1800", ""},
	}
	for _, tt := range tests {
		got, ok := parseHotfixDate(tt.in)
		if tt.want == "" {
			if ok {
				t.Errorf("%q: got %v, want no date", tt.in, got)
			}
			continue
		}
		if !ok || !got.Equal(*date(tt.want)) {
			t.Errorf("%q: got %v %v, want %s", tt.in, got, ok, tt.want)
		}
	}
}

func TestNewestHotfix(t *testing.T) {
	tests := []struct{ file, want string }{
		{"hotfix-us.json", "2026-11-12"},
		{"hotfix-de.json", "2026-11-12"},
		{"hotfix-old.json", "2026-07-09"},
		{"hotfix-odd.json", "2026-11-03"},
	}
	for _, tt := range tests {
		var rows []hotfix
		if err := json.Unmarshal([]byte(string(platformtest.ReadFixture(t, "windows", tt.file))), &rows); err != nil {
			t.Fatal(err)
		}
		if got := newestHotfix(rows); got == nil || !got.Equal(*date(tt.want)) {
			t.Errorf("%s: got %v, want %s", tt.file, got, tt.want)
		}
	}
	if got := newestHotfix(nil); got != nil {
		t.Errorf("no rows: %v", got)
	}
}

func TestWindowsRelease(t *testing.T) {
	tests := []struct {
		name                    string
		os                      winOS
		ubr, display, edition   string
		versionID, build, eolAt string
	}{
		{"11 25H2 pro", winOS{"Microsoft Windows 11 Pro", "10.0.26200", "26200"}, "7171", "25H2", "Professional", "11 25H2", "26200.7171", "2027-10-12"},
		{"11 24H2 home", winOS{"Microsoft Windows 11 Home", "10.0.26100", "26100"}, "2605", "24H2", "Core", "11 24H2", "26100.2605", "2026-10-13"},
		{"11 24H2 enterprise", winOS{"Microsoft Windows 11 Enterprise", "10.0.26100", "26100"}, "2605", "24H2", "Enterprise", "11 24H2", "26100.2605", "2027-10-12"},
		{"11 23H2 pro for workstations", winOS{"Microsoft Windows 11 Pro für Workstations", "10.0.22631", "22631"}, "4460", "23H2", "ProfessionalWorkstation", "11 23H2", "22631.4460", "2025-11-11"},
		{"11 22H2 unknown edition", winOS{"Microsoft Windows 11 Pro", "10.0.22621", "22621"}, "", "22H2", "", "11 22H2", "22621", "2025-10-14"},
		{"10 22H2", winOS{"Microsoft Windows 10 Pro", "10.0.19045", "19045"}, "6456", "22H2", "Professional", "10 22H2", "19045.6456", "2025-10-14"},
		{"10 1809 pro", winOS{"Microsoft Windows 10 Pro", "10.0.17763", "17763"}, "1", "", "Professional", "10", "17763.1", "2021-12-14"},
		{"10 LTSC 2019", winOS{"Microsoft Windows 10 Enterprise LTSC", "10.0.17763", "17763"}, "6893", "", "EnterpriseS", "10", "17763.6893", ""},
		{"server 2025", winOS{"Microsoft Windows Server 2025 Datacenter", "10.0.26100", "26100"}, "2605", "24H2", "ServerDatacenter", "11 24H2", "26100.2605", ""},
		{"future build", winOS{"Microsoft Windows 11 Pro", "10.0.27000", "27000"}, "1", "26H2", "Professional", "11 26H2", "27000.1", ""},
		{"garbage build", winOS{"?", "", "x"}, "1", "", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := windowsRelease(tt.os, tt.ubr, tt.display, tt.edition)
			if r.ID != "windows" || r.VersionID != tt.versionID || r.Build != tt.build || r.PrettyName != strings.TrimSpace(tt.os.Caption) {
				t.Errorf("got %+v", r)
			}
			switch {
			case tt.eolAt == "" && r.EndOfLife != nil:
				t.Errorf("end of life %v, want none", r.EndOfLife)
			case tt.eolAt != "" && (r.EndOfLife == nil || !r.EndOfLife.Equal(*date(tt.eolAt))):
				t.Errorf("end of life %v, want %s", r.EndOfLife, tt.eolAt)
			}
		})
	}
}

// windowsReplay answers every read the windows collector makes; the
// registry values in reg override the defaults (a nil value deletes).
func windowsReplay(t *testing.T, osFile, hotfixFile string, reg map[string]*platform.RegistryValue) platformtest.Replay {
	t.Helper()
	wmi := map[string]string{}
	if osFile != "" {
		wmi[cimv2Namespace+"|"+winOSQuery] = string(platformtest.ReadFixture(t, "windows", osFile))
	}
	if hotfixFile != "" {
		wmi[cimv2Namespace+"|"+hotfixQuery] = string(platformtest.ReadFixture(t, "windows", hotfixFile))
	}
	regs := map[string]platform.RegistryValue{
		currentVersion + "|UBR":            {Type: "DWORD", Int: 7171},
		currentVersion + "|DisplayVersion": {Type: "SZ", String: "25H2"},
		currentVersion + "|EditionID":      {Type: "SZ", String: "Professional"},
		// wuauserv's default start type: manual (trigger start).
		wuauservKey + "|Start": {Type: "DWORD", Int: 3},
	}
	for k, v := range reg {
		if v == nil {
			delete(regs, k)
		} else {
			regs[k] = *v
		}
	}
	return platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: wmi, RegistryValues: regs}
}

func dword(n uint64) *platform.RegistryValue { return &platform.RegistryValue{Type: "DWORD", Int: n} }

func TestWindowsAutoUpdates(t *testing.T) {
	tests := []struct {
		name    string
		reg     map[string]*platform.RegistryValue
		enabled bool
		detail  string
	}{
		{"no policy", nil, true, "no policy: Windows default"},
		{"NoAutoUpdate 1", map[string]*platform.RegistryValue{auPolicyKey + "|NoAutoUpdate": dword(1), auPolicyKey + "|AUOptions": dword(4)}, false, "NoAutoUpdate=1"},
		{"AUOptions 4", map[string]*platform.RegistryValue{auPolicyKey + "|NoAutoUpdate": dword(0), auPolicyKey + "|AUOptions": dword(4)}, true, "AUOptions=4"},
		{"AUOptions 3", map[string]*platform.RegistryValue{auPolicyKey + "|AUOptions": dword(3)}, false, "AUOptions=3 (download, notify to install)"},
		{"AUOptions 2", map[string]*platform.RegistryValue{auPolicyKey + "|AUOptions": dword(2)}, false, "notify before download"},
		{"AUOptions 9", map[string]*platform.RegistryValue{auPolicyKey + "|AUOptions": dword(9)}, false, "undocumented"},
		{"NoAutoUpdate 0 only", map[string]*platform.RegistryValue{auPolicyKey + "|NoAutoUpdate": dword(0)}, true, "Windows default"},
		// False passes closed in patches parser v3: each was read as "no
		// policy" or as AUOptions 4 and passed.
		{"wuauserv disabled, no policy", map[string]*platform.RegistryValue{wuauservKey + "|Start": dword(4)}, false, "wuauserv) is disabled"},
		{"wuauserv disabled, AUOptions 4", map[string]*platform.RegistryValue{auPolicyKey + "|AUOptions": dword(4), wuauservKey + "|Start": dword(4)}, false, "Start=4"},
		{"wuauserv not readable", map[string]*platform.RegistryValue{wuauservKey + "|Start": nil}, false, "not readable"},
		{"AUOptions as a string", map[string]*platform.RegistryValue{auPolicyKey + "|AUOptions": {Type: "SZ", String: "2"}}, false, "AUOptions is not a DWORD"},
		{"NoAutoUpdate as a string", map[string]*platform.RegistryValue{auPolicyKey + "|NoAutoUpdate": {Type: "SZ", String: "1"}}, false, "NoAutoUpdate is not a DWORD"},
		{"NoAutoUpdate 2", map[string]*platform.RegistryValue{auPolicyKey + "|NoAutoUpdate": dword(2)}, false, "NoAutoUpdate is not a DWORD 0 or 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := New().Collect(context.Background(), windowsReplay(t, "os-11-25h2.json", "hotfix-us.json", tt.reg))
			if err != nil {
				t.Fatal(err)
			}
			au := res.Payload.(Payload).AutoUpdates
			if au == nil || au.Enabled != tt.enabled || au.Mechanism != "windows-update" || !strings.Contains(au.Detail, tt.detail) {
				t.Errorf("got %+v", au)
			}
		})
	}
}

func TestCollectWindows(t *testing.T) {
	res, err := New().Collect(context.Background(), windowsReplay(t, "os-11-25h2.json", "hotfix-de.json", nil))
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Manager != "" || p.PendingUpdates != 0 || p.PendingSecurityUpdates != 0 {
		t.Errorf("pending updates are not read: %+v", p)
	}
	if p.OS.VersionID != "11 25H2" || p.OS.Build != "26200.7171" || p.OS.EndOfLife == nil || !p.OS.EndOfLife.Equal(*date("2027-10-12")) {
		t.Errorf("os %+v", p.OS)
	}
	if p.LastSuccessfulUpdate == nil || !p.LastSuccessfulUpdate.Equal(*date("2026-11-12")) {
		t.Errorf("last update %v", p.LastSuccessfulUpdate)
	}
	kinds := map[string]int{}
	for _, s := range res.Sources {
		kinds[s.Kind]++
		if s.Error != "" {
			t.Errorf("source %+v", s)
		}
	}
	if kinds["wmi"] != 2 || kinds["registry"] != 6 || kinds["api"] != 1 {
		t.Errorf("sources %+v", res.Sources)
	}

	// No registry values at all and no hotfix class: still a result.
	none := map[string]*platform.RegistryValue{currentVersion + "|UBR": nil, currentVersion + "|DisplayVersion": nil, currentVersion + "|EditionID": nil}
	res, err = New().Collect(context.Background(), windowsReplay(t, "os-10-22h2.json", "", none))
	if err != nil {
		t.Fatal(err)
	}
	p = res.Payload.(Payload)
	if p.OS.VersionID != "10" || p.OS.Build != "19045" || p.LastSuccessfulUpdate != nil || p.OS.EndOfLife == nil {
		t.Errorf("partial: %+v", p)
	}

	// Failures: OS class missing, garbage rows, no rows, garbage hotfixes.
	if _, err := New().Collect(context.Background(), windowsReplay(t, "", "hotfix-us.json", nil)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing Win32_OperatingSystem: %v", err)
	}
	h := windowsReplay(t, "os-11-25h2.json", "hotfix-us.json", nil)
	h.WMIResults[cimv2Namespace+"|"+winOSQuery] = `[]`
	if _, err := New().Collect(context.Background(), h); err == nil {
		t.Error("no OS rows: want error")
	}
	h.WMIResults[cimv2Namespace+"|"+winOSQuery] = `not json`
	if _, err := New().Collect(context.Background(), h); err == nil {
		t.Error("garbage OS rows: want error")
	}
	h = windowsReplay(t, "os-11-25h2.json", "hotfix-us.json", nil)
	h.WMIResults[cimv2Namespace+"|"+hotfixQuery] = `[{"HotFixID": 5}]`
	res, err = New().Collect(context.Background(), h)
	if err == nil || res.Payload.(Payload).OS.Build != "26200.7171" {
		t.Errorf("garbage hotfix rows: want error with a payload, got %+v %v", res, err)
	}
}

func FuzzParseHotfixDate(f *testing.F) {
	for _, s := range []string{"11/12/2026", "12.11.2026", "2026-11-12", "20261112", "01ce8280948cc000", "", "25/11/26", "1.1.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseHotfixDate(s)
		if !ok {
			return
		}
		if d.Year() < 1990 || d.Year() > 2200 || d.Hour() != 0 || d.Location() != time.UTC {
			t.Errorf("%q: %v", s, d)
		}
	})
}
