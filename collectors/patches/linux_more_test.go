package patches

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

// testNow is the fixed clock of the Collect tests.
var testNow = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

func cmdKey(argv []string) string { return strings.Join(argv, " ") }

// The zypper and apk fixtures are SYNTHETIC, written from the documented
// output formats; see testdata/README.md.
func TestParseZypperXML(t *testing.T) {
	tests := []struct {
		name          string
		in            []byte
		packages      int
		security      int
		oldest        string // time.DateOnly, "" for none
		firstSecurity string
		wantErr       string // substring, "" for none
	}{
		{name: "list-updates", in: platformtest.ReadFixture(t, "zypper/list-updates.xml"), packages: 4},
		{name: "list-updates none", in: platformtest.ReadFixture(t, "zypper/list-updates-none.xml")},
		{name: "list-patches security", in: platformtest.ReadFixture(t, "zypper/list-patches-security.xml"), security: 2, oldest: "2026-10-20",
			firstSecurity: "SUSE-SLE-Module-Basesystem-15-SP6-2026-3911"},
		{name: "patch without issue-date", in: []byte(`<stream><update-status version="0.6"><update-list>` +
			`<update name="p1" edition="1" kind="patch" category="security" status="needed" severity="low"/>` +
			`<update name="p2" edition="1" kind="patch" category="security" status="not-needed"/>` +
			`<update name="p3" edition="1" kind="patch" category="security" status="needed"><issue-date time="bogus"/></update>` +
			`</update-list></update-status></stream>`), security: 2, firstSecurity: "p1"},
		// One needed patch without a date: the dated one alone could make
		// the oldest look too young, so none is reported.
		{name: "one dated, one undated", in: []byte(`<stream><update-status version="0.6"><update-list>` +
			`<update name="p1" edition="1" kind="patch" category="security" status="needed"><issue-date time="1790000000"/></update>` +
			`<update name="p2" edition="1" kind="patch" category="security" status="needed"/>` +
			`</update-list></update-status></stream>`), security: 2, firstSecurity: "p1"},
		{name: "zypper error message", in: platformtest.ReadFixture(t, "zypper/error-no-repos.xml"), wantErr: "System management is locked"},
		{name: "empty output", in: nil, wantErr: "no <update-status>"},
		{name: "garbage", in: []byte("<stream><update-status><update name=\"x\" kind=\"package\"></stream>"), wantErr: "parse zypper xml"},
		{name: "table instead of xml", in: []byte("S | Repository | Name | Current Version | Available Version | Arch\n"), wantErr: "no <update-status>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			us, err := parseZypperXML(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n, list, oldest := zypperSecurity(us)
			if got := zypperPackages(us); got != tt.packages && tt.security == 0 {
				t.Errorf("packages = %d, want %d", got, tt.packages)
			}
			if n != tt.security || len(list) != n {
				t.Errorf("security = %d %+v, want %d", n, list, tt.security)
			}
			if tt.firstSecurity != "" && list[0].Name != tt.firstSecurity {
				t.Errorf("first = %+v", list[0])
			}
			got := ""
			if oldest != nil {
				got = oldest.Format(time.DateOnly)
			}
			if got != tt.oldest {
				t.Errorf("oldest = %q, want %q", got, tt.oldest)
			}
		})
	}
}

func TestParseApkVersion(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		n       int
		first   apkUpdate
		wantErr bool
	}{
		{name: "updates", in: platformtest.ReadFixture(t, "apk/version-updates.txt"), n: 6,
			first: apkUpdate{Name: "busybox", Current: "1.36.1-r29", Candidate: "1.36.1-r31"}},
		{name: "up to date", in: platformtest.ReadFixture(t, "apk/version-none.txt")},
		{name: "dashed name", in: []byte("Installed: Available:\npy3-setuptools-70.3.0-r0 < 70.3.0-r1\n"), n: 1,
			first: apkUpdate{Name: "py3-setuptools", Current: "70.3.0-r0", Candidate: "70.3.0-r1"}},
		{name: "empty output", in: nil, wantErr: true},
		{name: "error text", in: []byte("ERROR: Unable to lock database: Permission denied\n"), wantErr: true},
		{name: "unsplittable names skipped", in: []byte("Installed: Available:\nnoversion < 1\nfoo-1 < 2\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ups, err := parseApkVersion(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(ups) != tt.n {
				t.Fatalf("got %d updates %+v, want %d", len(ups), ups, tt.n)
			}
			if tt.n > 0 && ups[0] != tt.first {
				t.Errorf("first = %+v, want %+v", ups[0], tt.first)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.0-27-amd64", "6.1.0-26-amd64", 1},
		{"6.1.0-9-amd64", "6.1.0-26-amd64", -1}, // numeric, not lexical
		{"5.14.0-427.13.1.el9_4.x86_64", "5.14.0-427.13.1.el9_4.x86_64", 0},
		{"5.14.0-503.11.1.el9_5.x86_64", "5.14.0-427.13.1.el9_4.x86_64", 1},
		{"6.4.0-150600.23.30-default", "6.4.0-150600.23.25-default", 1},
		{"6.8.0-50-generic", "6.8.0-50-generic+1", -1},
		{"6.1.0", "6.1.0-rc7", -1},
		{"6.1.0-1", "6.1.0-rc7", 1},
		{"", "", 0},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := compareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
	if got := newestKernel([]string{"6.1.0-9-amd64", "6.1.0-26-amd64", "6.1.0-10-amd64"}); got != "6.1.0-26-amd64" {
		t.Errorf("newest = %q", got)
	}
}

func TestParseDnfUpdateinfoDates(t *testing.T) {
	for in, want := range map[string]string{
		string(platformtest.ReadFixture(t, "dnf/updateinfo-info-security.txt")): "2026-10-01",
		"  Update ID: A\n    Updated: 2026-09-01 00:00:00\n":                    "2026-09-01",
		"Issued : 2026-10-05\nUpdated : 2026-01-01 00:00:00\n":                  "2026-10-05", // Issued wins
		"Issued : yesterday\n": "",
		"":                     "",
		// One advisory without a date: the oldest is unknown.
		"  Update ID: A\n     Issued: 2026-10-01 12:00:00\n  Update ID: B\n   Severity: Important\n":           "",
		"  Update ID: A\n     Issued: 2026-10-01 12:00:00\n  Update ID: B\n    Updated: 2026-09-01 00:00:00\n": "2026-09-01",
	} {
		got := ""
		if d := parseDnfUpdateinfoDates([]byte(in)); d != nil {
			got = d.Format(time.DateOnly)
		}
		if got != want {
			t.Errorf("dates(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSysconfig(t *testing.T) {
	b := platformtest.ReadFixture(t, "kernel-pending/etc/sysconfig/automatic_online_update")
	if v, ok := parseSysconfig(b, "AOU_ENABLE_CRONJOB"); !ok || !truthy(v) {
		t.Errorf("AOU_ENABLE_CRONJOB = %q %v", v, ok)
	}
	if _, ok := parseSysconfig(b, "AOU_AUTO_AGREE_WITH_LICENSES"); ok {
		t.Error("unset key found")
	}
	if v, _ := parseSysconfig([]byte("K=\"true\"\nK='false'\n"), "K"); v != "false" {
		t.Errorf("last wins: %q", v)
	}
}

func TestCollectZypper(t *testing.T) {
	h := platformtest.Replay{OS: "linux", Live: &platform.Live{Root: "testdata/kernel-pending"}, Commands: map[string]platform.Result{
		cmdKey(zypperUpdatesArgv): {ExitCode: 100, Stdout: platformtest.ReadFixture(t, "zypper/list-updates.xml")},
		cmdKey(zypperPatchesArgv): {ExitCode: 101, Stdout: platformtest.ReadFixture(t, "zypper/list-patches-security.xml")},
		cmdKey(zypperRebootArgv):  {ExitCode: 0},
	}}
	c := newCollector(func() time.Time { return testNow })
	res, err := c.Collect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Manager != "zypper" || p.PendingUpdates != 4 || p.PendingSecurityUpdates != 2 || len(p.PendingSecurity) != 2 {
		t.Errorf("counts: %+v", p)
	}
	if p.OldestPendingSecurityDays == nil || *p.OldestPendingSecurityDays != 34 {
		t.Errorf("oldest days = %v", p.OldestPendingSecurityDays)
	}
	if p.AutoUpdates == nil || !p.AutoUpdates.Enabled || p.AutoUpdates.Mechanism != "yast2-online-update" {
		t.Errorf("auto updates = %+v", p.AutoUpdates)
	}
	if p.OS.ID != "sles" || p.OS.EndOfLife != nil {
		t.Errorf("os = %+v", p.OS)
	}
	// needs-rebooting said no, but a newer kernel is installed; the stray
	// .23.99 directory without modules.dep does not count.
	if !p.RebootRequired || p.KernelRunning != "6.4.0-150600.23.25-default" || p.KernelInstalled != "6.4.0-150600.23.30-default" ||
		p.RebootReason != "kernel 6.4.0-150600.23.30-default installed, 6.4.0-150600.23.25-default running" {
		t.Errorf("kernel/reboot: %+v", p)
	}

	// needs-rebooting says reboot: its reason is kept.
	h.Commands[cmdKey(zypperRebootArgv)] = platform.Result{ExitCode: zypperExitRebootNeeded}
	res, _ = c.Collect(context.Background(), h)
	if p := res.Payload.(Payload); !p.RebootRequired || p.RebootReason != "zypper needs-rebooting exited 102" {
		t.Errorf("needs-rebooting: %+v", p)
	}

	// zypper fails (locked): an error, the manager still named, what could
	// be read still reported.
	h.Commands = map[string]platform.Result{
		cmdKey(zypperUpdatesArgv): {ExitCode: 7, Stdout: platformtest.ReadFixture(t, "zypper/error-no-repos.xml")},
		cmdKey(zypperPatchesArgv): {ExitCode: 0, Stdout: []byte("garbage")},
	}
	res, err = c.Collect(context.Background(), h)
	p = res.Payload.(Payload)
	if err == nil || errors.Is(err, collectors.ErrNotApplicable) || p.Manager != "zypper" || p.AutoUpdates == nil || p.KernelInstalled == "" {
		t.Errorf("failing zypper: err=%v payload=%+v", err, p)
	}

	// The security list cannot be run, or some repositories were skipped:
	// an error, never "no pending security updates".
	for name, sec := range map[string]platform.Result{
		"list-patches missing from the host": {},
		"repositories skipped (106)":         {ExitCode: zypperExitReposSkipped, Stdout: platformtest.ReadFixture(t, "zypper/list-patches-security.xml")},
	} {
		h.Commands = map[string]platform.Result{
			cmdKey(zypperUpdatesArgv): {ExitCode: 100, Stdout: platformtest.ReadFixture(t, "zypper/list-updates.xml")},
			cmdKey(zypperRebootArgv):  {ExitCode: 0},
		}
		if name != "list-patches missing from the host" {
			h.Commands[cmdKey(zypperPatchesArgv)] = sec
		}
		if _, err := c.Collect(context.Background(), h); err == nil {
			t.Errorf("%s: no error, so the security count would read as 0", name)
		}
	}

	// Garbage XML with a success exit is an error too.
	h.Commands = map[string]platform.Result{cmdKey(zypperUpdatesArgv): {Stdout: []byte("<stream><update-status>")}}
	if _, err := c.Collect(context.Background(), h); err == nil {
		t.Error("garbage xml: no error")
	}
}

func TestCollectApk(t *testing.T) {
	h := platformtest.Replay{OS: "linux", Live: &platform.Live{Root: "testdata/alpine320"}, Commands: map[string]platform.Result{
		cmdKey(apkVersionArgv): {Stdout: platformtest.ReadFixture(t, "apk/version-updates.txt")},
	}}
	res, err := newCollector(func() time.Time { return testNow }).Collect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Manager != "apk" || p.PendingUpdates != 6 || p.PendingSecurityUpdates != 6 || len(p.PendingSecurity) != 6 {
		t.Errorf("counts: %+v", p)
	}
	if p.OS.EndOfLife == nil || p.OS.EndOfLife.Format(time.DateOnly) != "2026-04-01" {
		t.Errorf("eol = %v", p.OS.EndOfLife)
	}
	if p.RebootRequired || p.KernelRunning != "6.6.58-0-lts" || p.KernelInstalled != "6.6.58-0-lts" {
		t.Errorf("kernel: %+v", p)
	}
	found := false
	for _, s := range res.Sources {
		if s.Ref == cmdKey(apkVersionArgv) && strings.HasPrefix(s.Excerpt, apkNote) {
			found = true
		}
	}
	if !found {
		t.Errorf("no apk note in sources: %+v", res.Sources)
	}

	for name, r := range map[string]platform.Result{
		"empty output": {},
		"exit 1":       {ExitCode: 1, Stderr: []byte("ERROR: Unable to lock database")},
	} {
		h.Commands = map[string]platform.Result{cmdKey(apkVersionArgv): r}
		res, err := collectLinux(context.Background(), h, testNow)
		if err == nil || res.Payload.(Payload).Manager != "apk" {
			t.Errorf("%s: err=%v", name, err)
		}
	}
}

func TestCollectKernelOnly(t *testing.T) {
	// No package manager: not applicable, but the kernel is still read.
	h := platformtest.Replay{OS: "linux", Live: &platform.Live{Root: "testdata/kernel-current"}}
	res, err := collectLinux(context.Background(), h, testNow)
	if !errors.Is(err, collectors.ErrNotApplicable) {
		t.Errorf("err = %v", err)
	}
	p := res.Payload.(Payload)
	if p.Manager != "" || p.RebootRequired || p.KernelRunning != "6.1.0-26-amd64" || p.KernelInstalled != "6.1.0-26-amd64" {
		t.Errorf("payload = %+v", p)
	}
}

func TestCollectDnfAdvisoryAge(t *testing.T) {
	h := platformtest.Replay{OS: "linux", Live: &platform.Live{Root: t.TempDir()}, Commands: map[string]platform.Result{
		"dnf -q check-update":               {ExitCode: 100, Stdout: []byte("openssl.x86_64  1:3.1.7-1.fc40  updates\ncurl.x86_64  8.9.2-1.fc40  updates\n")},
		"dnf -q updateinfo list --security": {Stdout: []byte("FEDORA-2026-1a2b3c4d5e Important/Sec. openssl-1:3.1.7-1.fc40.x86_64\nFEDORA-2026-0011223344 Low/Sec. curl-8.9.2-1.fc40.x86_64\n")},
		"dnf -q updateinfo info --security": {Stdout: platformtest.ReadFixture(t, "dnf/updateinfo-info-security.txt")},
	}}
	res, err := newCollector(func() time.Time { return testNow }).Collect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.OldestPendingSecurityDays == nil || *p.OldestPendingSecurityDays != 53 {
		t.Errorf("oldest days = %v", p.OldestPendingSecurityDays)
	}
	// Without updateinfo info (older dnf, or yum), no age.
	delete(h.Commands, "dnf -q updateinfo info --security")
	res, _ = collectLinux(context.Background(), h, testNow)
	if p := res.Payload.(Payload); p.OldestPendingSecurityDays != nil {
		t.Errorf("oldest days = %v", *p.OldestPendingSecurityDays)
	}
}

func FuzzParseZypperXML(f *testing.F) {
	f.Add(platformtest.ReadFixture(f, "zypper/list-updates.xml"))
	f.Add(platformtest.ReadFixture(f, "zypper/list-patches-security.xml"))
	f.Add(platformtest.ReadFixture(f, "zypper/error-no-repos.xml"))
	f.Fuzz(func(t *testing.T, b []byte) {
		us, err := parseZypperXML(b)
		if err != nil {
			return
		}
		n, list, _ := zypperSecurity(us)
		if n > len(us) || len(list) > maxListed || zypperPackages(us) > len(us) {
			t.Errorf("counts out of range: %d %d of %d", n, len(list), len(us))
		}
	})
}

func FuzzParseApkVersion(f *testing.F) {
	f.Add(platformtest.ReadFixture(f, "apk/version-updates.txt"))
	f.Add(platformtest.ReadFixture(f, "apk/version-none.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ups, err := parseApkVersion(b)
		if err != nil {
			return
		}
		for _, u := range ups {
			if u.Name == "" || u.Current == "" || u.Candidate == "" {
				t.Errorf("empty field: %+v", u)
			}
		}
		if n, list := apkSecurityPackages(ups); n != len(ups) || len(list) > maxListed {
			t.Errorf("counts: %d %d of %d", n, len(list), len(ups))
		}
	})
}
