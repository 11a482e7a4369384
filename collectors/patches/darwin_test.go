package patches

import (
	"context"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseSwVers(t *testing.T) {
	tests := []struct {
		file, version, build, pretty string
		eol                          string
	}{
		{"sw_vers-15.1.txt", "15.1", "24B83", "macOS Sequoia 15.1", ""},
		{"sw_vers-14.6.1.txt", "14.6.1", "23G93", "macOS Sonoma 14.6.1", ""},
		{"sw_vers-13.6.7.txt", "13.6.7", "22G720", "macOS Ventura 13.6.7", "2025-09-15"},
		{"sw_vers-13.4.1-rsr.txt", "13.4.1", "22F770820d", "macOS Ventura 13.4.1 (c)", "2025-09-15"},
		{"sw_vers-10.15.7.txt", "10.15.7", "19H2026", "Mac OS X Catalina 10.15.7", "2022-10-24"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			v, err := parseSwVers(platformtest.ReadFixture(t, "darwin", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r := macOSRelease(v)
			eol := ""
			if r.EndOfLife != nil {
				eol = r.EndOfLife.Format(time.DateOnly)
			}
			if r.ID != "macos" || r.VersionID != tt.version || r.Build != tt.build || r.PrettyName != tt.pretty || eol != tt.eol {
				t.Errorf("got %+v (eol %q)", r, eol)
			}
		})
	}
	for _, bad := range []string{"", "garbage", "ProductName: macOS\n"} {
		if _, err := parseSwVers([]byte(bad)); err == nil {
			t.Errorf("parseSwVers(%q): want error", bad)
		}
	}
}

func TestParseSoftwareUpdateList(t *testing.T) {
	tests := []struct {
		file              string
		pending, security int
	}{
		{"softwareupdate-none.txt", 0, 0},
		{"softwareupdate-pending.txt", 3, 1},
		{"softwareupdate-ventura-pending.txt", 2, 2},
		{"softwareupdate-security-response.txt", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ups, err := parseSoftwareUpdateList(platformtest.ReadFixture(t, "darwin", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			sec := 0
			for _, u := range ups {
				if u.Label == "" || u.Title == "" || u.Version == "" || !u.Recommended {
					t.Errorf("incomplete %+v", u)
				}
				if u.Security("") {
					sec++
				}
			}
			if len(ups) != tt.pending || sec != tt.security {
				t.Errorf("pending %d security %d: %+v", len(ups), sec, ups)
			}
		})
	}
	ups, err := parseSoftwareUpdateList(platformtest.ReadFixture(t, "darwin", "softwareupdate-pending.txt"))
	if err != nil || ups[0].Action != "restart" || ups[0].Version != "14.6.1" || ups[0].Title != "macOS Sonoma 14.6.1" {
		t.Errorf("first item %+v %v", ups, err)
	}
	// Pre-10.15 format: items without "Label:".
	old := "Software Update found the following new or updated software:\n   * Safari11.1HighSierraAuto-11.1\n\tSafari (11.1), 61291K [recommended]\n"
	if ups, err := parseSoftwareUpdateList([]byte(old)); err != nil || len(ups) != 1 {
		t.Errorf("old format: %+v %v", ups, err)
	}
	for _, bad := range []string{"", "garbage", string(platformtest.ReadFixture(t, "darwin", "softwareupdate-partial.txt"))} {
		if _, err := parseSoftwareUpdateList([]byte(bad)); err == nil {
			t.Errorf("parseSoftwareUpdateList(%q): want error", bad)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	m, err := parseDefaults(platformtest.ReadFixture(t, "darwin", "defaults-softwareupdate-off.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if m["CriticalUpdateInstall"] != "0" || m["LastAttemptSystemVersion"] != "13.6.7 (22G720)" || m["Identifier"] != "" || m["Display Name"] != "" {
		t.Errorf("got %v", m)
	}
	for _, bad := range []string{"", "garbage", string(platformtest.ReadFixture(t, "darwin", "defaults-missing-domain.txt"))} {
		if _, err := parseDefaults([]byte(bad)); err == nil {
			t.Errorf("parseDefaults(%q): want error", bad)
		}
	}
}

func FuzzParseSoftwareUpdateList(f *testing.F) {
	for _, n := range []string{"softwareupdate-none.txt", "softwareupdate-pending.txt", "softwareupdate-security-response.txt", "defaults-softwareupdate-off.txt", "sw_vers-14.6.1.txt"} {
		f.Add(platformtest.ReadFixture(f, "darwin", n))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseSoftwareUpdateList(b)
		_, _ = parseDefaults(b)
		if v, err := parseSwVers(b); err == nil {
			_ = macOSRelease(v)
		}
	})
}

func TestCollectDarwin(t *testing.T) {
	out := func(file string) platform.Result {
		return platform.Result{Stdout: platformtest.ReadFixture(t, "darwin", file)}
	}
	prefs := "defaults read /Library/Preferences/com.apple.SoftwareUpdate"
	managed := "defaults read /Library/Managed Preferences/com.apple.SoftwareUpdate"
	unmanaged := platform.Result{ExitCode: 1, Stderr: platformtest.ReadFixture(t, "darwin", "defaults-missing-managed-domain.txt")}
	tests := []struct {
		name              string
		cmds              map[string]platform.Result
		version           string
		pending, security int
		auto, eol         bool
		last              string
		wantErr           bool
	}{
		{name: "up to date", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-14.6.1.txt"), "softwareupdate --list": {Stderr: platformtest.ReadFixture(t, "darwin", "softwareupdate-none.txt")},
			prefs: out("defaults-softwareupdate-on.txt"), managed: unmanaged,
		}, version: "14.6.1", auto: true, last: "2026-11-18T08:02:11Z"},
		// False passes closed in patches parser v3: an MDM profile turning
		// off what the local preferences say is on, and macOS updates
		// (security point releases) not installed automatically.
		{name: "managed off wins", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-14.6.1.txt"), "softwareupdate --list": {Stderr: platformtest.ReadFixture(t, "darwin", "softwareupdate-none.txt")},
			prefs: out("defaults-softwareupdate-on.txt"), managed: out("defaults-managed-softwareupdate-off.txt"),
		}, version: "14.6.1", last: "2026-11-18T08:02:11Z"},
		{name: "macOS updates not installed", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-14.6.1.txt"), "softwareupdate --list": {Stderr: platformtest.ReadFixture(t, "darwin", "softwareupdate-none.txt")},
			prefs: out("defaults-softwareupdate-critical-only.txt"), managed: unmanaged,
		}, version: "14.6.1", last: "2026-11-18T08:02:11Z"},
		{name: "managed unreadable", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-14.6.1.txt"), "softwareupdate --list": {Stderr: platformtest.ReadFixture(t, "darwin", "softwareupdate-none.txt")},
			prefs: out("defaults-softwareupdate-on.txt"),
		}, version: "14.6.1", last: "2026-11-18T08:02:11Z"},
		{name: "ventura behind", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-13.6.7.txt"), "softwareupdate --list": out("softwareupdate-ventura-pending.txt"),
			prefs: out("defaults-softwareupdate-off.txt"),
			// Ventura 13.7.1 is the security update; the Sonoma upgrade is a new
			// major release, not a pending fix.
		}, version: "13.6.7", pending: 2, security: 1, eol: true, last: "2025-06-02T14:20:05Z"},
		{name: "partial prefs", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-15.1.txt"), "softwareupdate --list": out("softwareupdate-pending.txt"),
			prefs: out("defaults-softwareupdate-partial.txt"),
			// The 14.6.1 update in this list is not for a 15.1 Mac's major release.
		}, version: "15.1", pending: 3, security: 0},
		{name: "no prefs domain", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-15.1.txt"), "softwareupdate --list": out("softwareupdate-none.txt"),
			prefs: {Stderr: platformtest.ReadFixture(t, "darwin", "defaults-missing-domain.txt"), ExitCode: 1},
		}, version: "15.1"},
		{name: "softwareupdate unreachable", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-15.1.txt"), "softwareupdate --list": {Stderr: platformtest.ReadFixture(t, "darwin", "softwareupdate-partial.txt")},
		}, version: "15.1", wantErr: true},
		{name: "softwareupdate exit 1", cmds: map[string]platform.Result{
			"sw_vers": out("sw_vers-15.1.txt"), "softwareupdate --list": {ExitCode: 1},
		}, version: "15.1", wantErr: true},
		{name: "sw_vers garbage", cmds: map[string]platform.Result{
			"sw_vers": {Stdout: []byte("garbage")}, "softwareupdate --list": out("softwareupdate-none.txt"),
		}, wantErr: true},
		{name: "nothing", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: tt.cmds}
			res, err := New().Collect(context.Background(), h)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			p := res.Payload.(Payload)
			last := ""
			if p.LastSuccessfulUpdate != nil {
				last = p.LastSuccessfulUpdate.Format(time.RFC3339)
			}
			if p.Manager != "softwareupdate" || p.OS.VersionID != tt.version || p.PendingUpdates != tt.pending ||
				p.PendingSecurityUpdates != tt.security || len(p.PendingSecurity) != tt.security ||
				p.AutoUpdates == nil || p.AutoUpdates.Enabled != tt.auto || p.AutoUpdates.Detail == "" ||
				(p.OS.EndOfLife != nil) != tt.eol || last != tt.last {
				t.Errorf("got %+v auto %+v last %q", p, p.AutoUpdates, last)
			}
		})
	}
}
