package patches

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseAptSimulation(t *testing.T) {
	tests := []struct {
		name          string
		in            []byte
		total, sec    int
		wantErr       bool
		firstSecurity string
	}{
		{name: "recorded debian12 dist-upgrade", in: platformtest.ReadFixture(t, "apt-dist-upgrade-debian12.txt"), total: 124, sec: 69, firstSecurity: "libgcrypt20-dev"},
		{name: "recorded debian12 upgrade", in: platformtest.ReadFixture(t, "apt-upgrade-debian12.txt"), total: 124, sec: 69, firstSecurity: "libgcrypt20-dev"},
		// Synthetic edge cases, not recordings:
		{name: "up to date", in: []byte("Reading package lists...\nCalculating upgrade...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n")},
		{name: "ubuntu origin and new dependency", in: []byte(
			"Inst linux-image-6.8.0-50-generic (6.8.0-50.51 Ubuntu:24.04/noble-security [amd64])\n" +
				"Inst openssl [3.0.13-0ubuntu3.1] (3.0.13-0ubuntu3.4 Ubuntu:24.04/noble-updates, Ubuntu:24.04/noble-security [amd64])\n" +
				"1 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.\n"), total: 1, sec: 1, firstSecurity: "openssl"},
		{name: "empty output", in: nil, wantErr: true},
		{name: "error text", in: []byte("E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ups, err := parseAptSimulation(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			n, list := securityPackages(ups)
			if len(ups) != tt.total || n != tt.sec {
				t.Errorf("total %d security %d, want %d %d", len(ups), n, tt.total, tt.sec)
			}
			if tt.firstSecurity != "" && (len(list) == 0 || list[0].Name != tt.firstSecurity) {
				t.Errorf("first security = %+v", list)
			}
			if len(list) > maxListed {
				t.Errorf("list not bounded: %d", len(list))
			}
		})
	}
}

func TestParseOSRelease(t *testing.T) {
	r := parseOSRelease(platformtest.ReadFixture(t, "debian12/etc/os-release"))
	if r.ID != "debian" || r.VersionID != "12" || r.Codename != "bookworm" || r.PrettyName != "Debian GNU/Linux 12 (bookworm)" {
		t.Errorf("got %+v", r)
	}
	if r.EndOfLife == nil || r.EndOfLife.Format(time.DateOnly) != "2028-06-30" {
		t.Errorf("eol = %v", r.EndOfLife)
	}
	for in, want := range map[string]string{
		"ID=rhel\nVERSION_ID=\"9.4\"\n":     "2032-05-31",
		"ID=ubuntu\nVERSION_ID=\"22.04\"\n": "2027-06-30",
		"ID=arch\n":                         "",
		"ID=debian\nVERSION_ID=\"99\"\n":    "",
		"":                                  "",
	} {
		got := ""
		if e := parseOSRelease([]byte(in)).EndOfLife; e != nil {
			got = e.Format(time.DateOnly)
		}
		if got != want {
			t.Errorf("eol(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseAptHistory(t *testing.T) {
	got := parseAptHistory(platformtest.ReadFixture(t, "debian12/var/log/apt/history.log"), time.UTC)
	if got == nil || got.Format(time.DateTime) != "2026-11-24 03:33:48" {
		t.Errorf("last upgrade = %v", got)
	}
	// A transaction that never ended does not count (synthetic).
	if got := parseAptHistory([]byte("Start-Date: 2024-01-01  10:00:00\nUpgrade: a:amd64 (1, 2)\n"), time.UTC); got != nil {
		t.Errorf("unfinished = %v", got)
	}
	if parseAptHistory(nil, time.UTC) != nil {
		t.Error("empty log")
	}
}

func TestParseAptPeriodic(t *testing.T) {
	tests := []struct {
		file    string
		val     string
		set, on bool
	}{
		{file: "apt-config-dump-unattended.txt", val: "1", set: true, on: true},
		{file: "apt-config-dump-default.txt"},
	}
	for _, tt := range tests {
		v, set := parseAptPeriodic(platformtest.ReadFixture(t, tt.file))["Unattended-Upgrade"]
		if v != tt.val || set != tt.set || periodicEnabled(v) != tt.on {
			t.Errorf("%s: %q %v", tt.file, v, set)
		}
	}
	if v := parseAptPeriodic([]byte("APT::Periodic::Unattended-Upgrade \"1\";\nAPT::Periodic::Unattended-Upgrade \"0\";\n"))["Unattended-Upgrade"]; periodicEnabled(v) {
		t.Error("last assignment should win")
	}
}

func TestCollectDebian(t *testing.T) {
	h := platformtest.Replay{Live: &platform.Live{Root: "testdata/debian12"}, Commands: map[string]platform.Result{
		"apt-get":    {Stdout: platformtest.ReadFixture(t, "apt-dist-upgrade-debian12.txt")},
		"apt-config": {Stdout: platformtest.ReadFixture(t, "apt-config-dump-unattended.txt")},
		"systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer": {Stdout: platformtest.ReadFixture(t, "systemd", "is-enabled-apt-debian12.txt")},
		"systemctl is-active apt-daily.timer apt-daily-upgrade.timer":  {Stdout: []byte("active\nactive\n")},
	}}
	res, err := collectLinux(context.Background(), h, testNow)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Manager != "apt" || p.PendingUpdates != 124 || p.PendingSecurityUpdates != 69 || len(p.PendingSecurity) != maxListed {
		t.Errorf("counts: %+v", p)
	}
	if p.OS.ID != "debian" || p.LastSuccessfulUpdate == nil || p.RebootRequired {
		t.Errorf("os/last/reboot: %+v", p)
	}
	if p.AutoUpdates == nil || !p.AutoUpdates.Enabled {
		t.Errorf("auto updates = %+v", p.AutoUpdates)
	}
	if len(res.Sources) < 3 {
		t.Errorf("sources = %+v", res.Sources)
	}

	// apt-config missing: apt's merged configuration is unknown (apt.conf.d
	// files are not parsed in its place); apt-get failing: error with what
	// could be read.
	h.Commands = map[string]platform.Result{"apt-get": {ExitCode: 100, Stderr: []byte("E: Unable to lock directory /var/lib/apt/lists/")}}
	res, err = collectLinux(context.Background(), h, testNow)
	p = res.Payload.(Payload)
	if err == nil || p.Manager != "apt" || p.AutoUpdates == nil || p.AutoUpdates.Enabled || !p.AutoUpdates.Unknown {
		t.Errorf("failing apt: err=%v payload=%+v", err, p)
	}
}

func TestCollectNoManager(t *testing.T) {
	h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}}
	res, err := collectLinux(context.Background(), h, testNow)
	if !errors.Is(err, collectors.ErrNotApplicable) {
		t.Errorf("err = %v", err)
	}
	if p := res.Payload.(Payload); p.Manager != "" {
		t.Errorf("payload = %+v", p)
	}
}

// The dnf inputs below are SYNTHETIC (written from dnf's documented output
// format), not recordings: no Fedora/RHEL host was reachable. See README.md.
func TestParseDnf(t *testing.T) {
	ui := "FEDORA-2024-1a2b3c4d5e Important/Sec. openssl-libs-1:3.1.4-2.fc39.x86_64\n" +
		"FEDORA-2024-9f8e7d6c5b Moderate/Sec.  openssl-libs-1:3.1.4-2.fc39.x86_64\n" +
		"FEDORA-2024-0011223344 Low/Sec.       curl-8.2.1-4.fc39.x86_64\n"
	n, list := dnfSecurityPackages(parseDnfUpdateinfo([]byte(ui)))
	if n != 2 || list[0].Name != "curl-8.2.1-4.fc39.x86_64" || list[1].Severity != "Important" {
		t.Errorf("updateinfo: %d %+v", n, list)
	}
	cu := "\nbash.x86_64          5.2.26-1.fc39        updates\nkernel.x86_64   6.8.9-100.fc39   updates\nObsoleting Packages\ngrub2-tools.x86_64  1:2.06-1  updates\n"
	if got := parseDnfCheckUpdate([]byte(cu)); len(got) != 2 {
		t.Errorf("check-update = %q", got)
	}
	log := "2024-05-01T10:00:00+0000 SUBDEBUG Upgrade: bash-5.2.26-1.fc39.x86_64\n2024-05-02T09:00:00+0000 SUBDEBUG Installed: x\n"
	if got := parseDnfRPMLog([]byte(log)); got == nil || got.Day() != 1 {
		t.Errorf("rpm log = %v", got)
	}
	conf := "[commands]\nupgrade_type = security\napply_updates = yes\n[emitters]\napply_updates = no\n"
	if v := iniValues([]byte(conf), "commands", "apply_updates"); len(v) != 1 || !truthy(v[0]) {
		t.Errorf("apply_updates = %q", v)
	}
	if len(parseDnfUpdateinfo(nil)) != 0 || len(parseDnfCheckUpdate([]byte("garbage"))) != 0 || parseDnfRPMLog([]byte("x")) != nil {
		t.Error("garbage should parse to nothing")
	}
}

func TestCollectDnf(t *testing.T) {
	h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, Commands: map[string]platform.Result{
		"dnf -q check-update":                              {ExitCode: 100, Stdout: []byte("bash.x86_64  5.2.26-1.fc39  updates\n")},
		"dnf -q updateinfo list --security":                {Stdout: []byte("FEDORA-2024-0011223344 Low/Sec. bash-5.2.26-1.fc39.x86_64\n")},
		"needs-restarting":                                 {ExitCode: 1, Stdout: []byte("Core libraries or services have been updated since boot-up:\n  * kernel\n")},
		"systemctl is-enabled dnf-automatic-install.timer": {ExitCode: 0, Stdout: []byte("enabled\n")},
		"systemctl is-active dnf-automatic-install.timer":  {ExitCode: 0, Stdout: []byte("active\n")},
	}}
	res, err := collectLinux(context.Background(), h, testNow)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Manager != "dnf" || p.PendingUpdates != 1 || p.PendingSecurityUpdates != 1 || !p.RebootRequired || p.AutoUpdates == nil || !p.AutoUpdates.Enabled {
		t.Errorf("payload = %+v %+v", p, p.AutoUpdates)
	}
}

func FuzzParseAptSimulation(f *testing.F) {
	f.Add(platformtest.ReadFixture(f, "apt-dist-upgrade-debian12.txt"))
	f.Add(platformtest.ReadFixture(f, "apt-upgrade-debian12.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ups, err := parseAptSimulation(b)
		if err == nil {
			n, _ := securityPackages(ups)
			if n > len(ups) {
				t.Errorf("more security than total")
			}
		}
	})
}
