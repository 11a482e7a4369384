package patches

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

// statHost answers Glob and Stat from a `stat -c '%Y %n'` listing, so file
// ages are the recorded ones, not those of the checked-out fixtures.
type statHost struct {
	platformtest.Replay
	mtimes map[string]time.Time
}

func (h statHost) Glob(pattern string) ([]string, error) {
	var out []string
	for p := range h.mtimes {
		if ok, _ := path.Match(pattern, p); ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (h statHost) Stat(p string) (platform.FileStat, error) {
	t, ok := h.mtimes[p]
	if !ok {
		return platform.FileStat{}, fmt.Errorf("stat %s: %w", p, fs.ErrNotExist)
	}
	return platform.FileStat{ModTime: t}, nil
}

// noStat is a Host without the Stat door.
type noStat struct{ platform.Host }

// parseStatListing reads `stat -c '%Y %n' FILES` output; stat's error
// lines (missing files) are skipped.
func parseStatListing(t *testing.T, s string) map[string]time.Time {
	t.Helper()
	m := map[string]time.Time{}
	for _, line := range strings.Split(s, "\n") {
		sec, name, ok := strings.Cut(line, " ")
		n, err := strconv.ParseInt(sec, 10, 64)
		if !ok || err != nil {
			continue
		}
		m[name] = time.Unix(n, 0).UTC()
	}
	return m
}

func TestIndexAge(t *testing.T) {
	recorded := string(platformtest.ReadFixture(t, "apt-index", "stat-debian12.txt"))
	noSecurity := strings.Join(func() []string {
		var out []string
		for _, l := range strings.Split(recorded, "\n") {
			if !strings.Contains(l, "security") {
				out = append(out, l)
			}
		}
		return out
	}(), "\n")
	tests := []struct {
		name, manager, listing string
		hideStat               bool
		wantTime, wantSource   string
		wantErr                string
	}{
		{name: "recorded debian12 after apt-get update", manager: "apt", listing: recorded,
			wantTime: "2026-12-06T12:15:26Z", wantSource: "/var/lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_InRelease"},
		// Derived from the recording: the same lists without the security
		// suite. Pending security updates cannot be seen at all.
		{name: "no security suite", manager: "apt", listing: noSecurity, wantErr: "no security suite index"},
		// Synthetic: the main suite refreshed today, the security suite
		// (mirror unreachable) weeks ago: the security list decides.
		{name: "security list stale, others fresh", manager: "apt", listing: "1796559326 /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease\n" +
			"1793880000 /var/lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_InRelease\n" +
			"1796559326 /var/lib/apt/periodic/update-success-stamp\n",
			wantTime: "2026-11-05T12:00:00Z", wantSource: "/var/lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_InRelease"},
		{name: "ubuntu security pocket Release", manager: "apt", listing: "1796559326 /var/lib/apt/lists/security.ubuntu.com_ubuntu_dists_jammy-security_Release\n",
			wantTime: "2026-12-06T12:15:26Z", wantSource: "/var/lib/apt/lists/security.ubuntu.com_ubuntu_dists_jammy-security_Release"},
		{name: "no lists at all", manager: "apt", listing: "", wantErr: "no security suite index"},
		{name: "host cannot stat", manager: "apt", listing: recorded, hideStat: true, wantErr: "not available from this host"},
		// Synthetic layouts of the other managers (no host reachable).
		{name: "dnf newest repomd", manager: "dnf", listing: "1796559000 /var/cache/dnf/fedora-0123456789abcdef/repodata/repomd.xml\n1796000000 /var/cache/dnf/updates-fedcba9876543210/repodata/repomd.xml\n",
			wantTime: "2026-12-06T12:10:00Z", wantSource: "/var/cache/dnf/fedora-0123456789abcdef/repodata/repomd.xml"},
		{name: "dnf5 cache", manager: "dnf", listing: "1796000000 /var/cache/libdnf5/updates-fedcba9876543210/repodata/repomd.xml\n",
			wantTime: "2026-11-30T00:53:20Z", wantSource: "/var/cache/libdnf5/updates-fedcba9876543210/repodata/repomd.xml"},
		{name: "dnf no cache", manager: "dnf", listing: "", wantErr: "no repository metadata"},
		{name: "zypper raw cache", manager: "zypper", listing: "1796000000 /var/cache/zypp/raw/repo-oss/repodata/repomd.xml\n",
			wantTime: "2026-11-30T00:53:20Z", wantSource: "/var/cache/zypp/raw/repo-oss/repodata/repomd.xml"},
		{name: "apk index", manager: "apk", listing: "1796000000 /var/cache/apk/APKINDEX.4a5b6c7d.tar.gz\n",
			wantTime: "2026-11-30T00:53:20Z", wantSource: "/var/cache/apk/APKINDEX.4a5b6c7d.tar.gz"},
		{name: "apk no index", manager: "apk", listing: "", wantErr: "no APKINDEX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h platform.Host = statHost{Replay: platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}}, mtimes: parseStatListing(t, tt.listing)}
			if tt.hideStat {
				h = noStat{h}
			}
			r := &reader{host: h}
			got := r.indexAge(tt.manager)
			if tt.wantErr != "" {
				if got.Refreshed != nil || !strings.Contains(got.Error, tt.wantErr) {
					t.Errorf("got %+v, want error %q", got, tt.wantErr)
				}
				return
			}
			if got.Refreshed == nil || got.Refreshed.Format(time.RFC3339) != tt.wantTime || got.Source != tt.wantSource {
				t.Errorf("got %+v (%v), want %s from %s", got, got.Refreshed, tt.wantTime, tt.wantSource)
			}
			if len(r.sources) != 1 || r.sources[0].Excerpt == "" {
				t.Errorf("sources = %+v", r.sources)
			}
		})
	}
}

func TestCollectDebianIndex(t *testing.T) {
	h := statHost{Replay: platformtest.Replay{Live: &platform.Live{Root: "testdata/debian12"}, Commands: map[string]platform.Result{
		"apt-get": {Stdout: []byte("Reading package lists...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n")},
	}}, mtimes: parseStatListing(t, string(platformtest.ReadFixture(t, "apt-index", "stat-debian12.txt")))}
	res, err := collectLinux(context.Background(), h, testNow)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Index == nil || p.Index.Refreshed == nil || !strings.HasSuffix(p.Index.Source, "bookworm-security_InRelease") {
		t.Errorf("index = %+v", p.Index)
	}
}

func TestDarwinIndex(t *testing.T) {
	for _, tt := range []struct{ file, want, key string }{
		{"defaults-softwareupdate-on.txt", "2026-11-19T08:02:43Z", "LastSuccessfulDate"},
		{"defaults-softwareupdate-off.txt", "2026-10-30T09:11:52Z", "LastSuccessfulDate"},
		{"defaults-softwareupdate-partial.txt", "", ""},
	} {
		m, err := parseDefaults(platformtest.ReadFixture(t, "darwin", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		got := darwinIndex(m)
		if tt.want == "" {
			if got.Refreshed != nil || got.Error == "" {
				t.Errorf("%s: %+v, want an error", tt.file, got)
			}
			continue
		}
		if got.Refreshed == nil || got.Refreshed.Format(time.RFC3339) != tt.want || !strings.HasSuffix(got.Source, tt.key) {
			t.Errorf("%s: %+v", tt.file, got)
		}
	}
}

// failing fails the commands named in fail (joined argv) as a timeout would.
type failing struct {
	platformtest.Replay
	fail map[string]bool
}

func (h failing) Run(ctx context.Context, argv ...string) (platform.Result, error) {
	if h.fail[strings.Join(argv, " ")] {
		return platform.Result{Argv: argv}, fmt.Errorf("%s: timed out after 30s: %w", argv[0], context.DeadlineExceeded)
	}
	return h.Replay.Run(ctx, argv...)
}

// TestDnfSecurityListFails: check-update succeeded with updates pending,
// but `dnf updateinfo list --security` timed out. The old code reported 0
// pending security updates without an error (a pass). Synthetic dnf output
// (see README.md).
func TestDnfSecurityListFails(t *testing.T) {
	h := failing{Replay: platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, Commands: map[string]platform.Result{
		"dnf -q check-update": {ExitCode: 100, Stdout: []byte("openssl-libs.x86_64  1:3.1.4-2.fc39  updates\n")},
	}}, fail: map[string]bool{"dnf -q updateinfo list --security": true}}
	res, err := collectLinux(context.Background(), h, testNow)
	if err == nil || !strings.Contains(err.Error(), "updateinfo") {
		t.Errorf("err = %v, want the updateinfo failure", err)
	}
	if p := res.Payload.(Payload); p.PendingUpdates != 1 {
		t.Errorf("payload = %+v", p)
	}
}
