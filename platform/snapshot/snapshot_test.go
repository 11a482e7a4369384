package snapshot

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

type row struct {
	Name      string
	Enabled   uint32
	Protected *bool
}

// source is a host with files, a directory, commands, WMI rows and registry
// values, recorded once and replayed in each test.
func source(t *testing.T) platform.Host {
	t.Helper()
	root := t.TempDir()
	for p, content := range map[string]string{
		"etc/os-release":              "ID=debian\nVERSION_ID=12\n",
		"sys/class/tpm/tpm0/caps":     "TCG version: 1.2\n",
		"etc/shadow":                  "root:$6$secret:19000::::::\n",
		"var/lib/evident-agent/x.txt": "agent state\n",
	} {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return platformtest.Replay{
		Live: &platform.Live{Root: root}, OS: "windows",
		Commands: map[string]platform.Result{
			"fdesetup status":     {Stdout: []byte("Encryption in progress: Percent completed = 42\n"), ExitCode: 2},
			"nft -j list ruleset": {Stdout: []byte(`{"nftables": []}`), Stderr: []byte("warning\n")},
		},
		WMIResults: map[string]string{`root\CIMV2|SELECT Name FROM Win32_X`: `[{"Name":"C:","Enabled":1,"Protected":true}]`},
		RegistryValues: map[string]platform.RegistryValue{
			`SYSTEM\SecureBoot\State|UEFISecureBootEnabled`: {Type: "DWORD", Int: 1},
		},
	}
}

// record runs reads through a Recorder over source and writes the snapshot.
func record(t *testing.T) string {
	t.Helper()
	rec := NewRecorder(source(t))
	ctx := context.Background()
	rec.ReadFile("/etc/os-release", 0)
	rec.ReadFile("/etc/missing", 0)
	rec.ReadFile("/etc/shadow", 0)
	rec.ReadFile("/var/lib/evident-agent/x.txt", 0)
	rec.ReadDir("/sys/class/tpm")
	rec.ReadDir("/sys/class/nothere")
	rec.Glob("/sys/class/tpm/*")
	rec.Run(ctx, "fdesetup", "status")
	rec.Run(ctx, "nft", "-j", "list", "ruleset")
	rec.Run(ctx, "nft", "-j", "list", "ruleset") // recorded once
	rec.Run(ctx, "pfctl", "-s", "info")          // not installed
	var rows []row
	rec.WMI(ctx, `root\CIMV2`, "SELECT Name FROM Win32_X", &rows)
	rec.WMI(ctx, `root\CIMV2`, "SELECT Name FROM Win32_Missing", &rows)
	rec.Registry(`SYSTEM\SecureBoot\State`, "UEFISecureBootEnabled")
	rec.Registry(`SOFTWARE\Policies\AU`, "NoAutoUpdate")
	dir := filepath.Join(t.TempDir(), "snap")
	if _, err := rec.Write(dir, "host-1", "test", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRoundTrip(t *testing.T) {
	dir := record(t)
	h, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if h.GOOS() != "windows" || h.Manifest().Hostname != "host-1" {
		t.Fatalf("manifest %+v", h.Manifest())
	}
	if b, err := h.ReadFile("/etc/os-release", 0); err != nil || string(b) != "ID=debian\nVERSION_ID=12\n" {
		t.Errorf("os-release = %q, %v", b, err)
	}
	for _, p := range []string{"/etc/missing", "/never/read"} {
		if _, err := h.ReadFile(p, 0); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(%s) err = %v, want not found", p, err)
		}
	}
	for _, p := range []string{"/etc/shadow", "/var/lib/evident-agent/x.txt"} {
		if _, err := h.ReadFile(p, 0); err == nil || !strings.Contains(err.Error(), "withheld") {
			t.Errorf("ReadFile(%s) err = %v, want withheld", p, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "fs", p)); err == nil {
			t.Errorf("%s was written into the snapshot", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ManifestName)); strings.Contains(string(b), "$6$secret") {
		t.Error("secret content in the manifest")
	}
	ents, err := h.ReadDir("/sys/class/tpm")
	if err != nil || len(ents) != 1 || ents[0].Name() != "tpm0" || !ents[0].IsDir() {
		t.Errorf("ReadDir = %v, %v", ents, err)
	}
	if _, err := h.ReadDir("/sys/class/nothere"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadDir(missing) err = %v", err)
	}
	if m, err := h.Glob("/sys/class/tpm/*"); err != nil || !reflect.DeepEqual(m, []string{"/sys/class/tpm/tpm0"}) {
		t.Errorf("Glob = %v, %v", m, err)
	}
	res, err := h.Run(ctx, "fdesetup", "status")
	if err != nil || res.ExitCode != 2 || !strings.Contains(string(res.Stdout), "Percent completed = 42") {
		t.Errorf("Run(fdesetup) = %+v, %v", res, err)
	}
	if res, err := h.Run(ctx, "nft", "-j", "list", "ruleset"); err != nil || string(res.Stderr) != "warning\n" {
		t.Errorf("Run(nft) = %+v, %v", res, err)
	}
	for _, argv := range [][]string{{"pfctl", "-s", "info"}, {"never", "run"}, {"nft", "list", "ruleset"}} {
		if _, err := h.Run(ctx, argv...); !errors.Is(err, platform.ErrCommandNotFound) {
			t.Errorf("Run(%v) err = %v, want not found", argv, err)
		}
	}
	var rows []row
	if err := h.WMI(ctx, `root\CIMV2`, "SELECT Name FROM Win32_X", &rows); err != nil || len(rows) != 1 || rows[0].Name != "C:" || rows[0].Protected == nil || !*rows[0].Protected {
		t.Errorf("WMI = %+v, %v", rows, err)
	}
	if err := h.WMI(ctx, `root\CIMV2`, "SELECT Name FROM Win32_Missing", &rows); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WMI(missing class) err = %v", err)
	}
	if v, err := h.Registry(`SYSTEM\SecureBoot\State`, "UEFISecureBootEnabled"); err != nil || v.Type != "DWORD" || v.Int != 1 {
		t.Errorf("Registry = %+v, %v", v, err)
	}
	if _, err := h.Registry(`SOFTWARE\Policies\AU`, "NoAutoUpdate"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Registry(missing) err = %v", err)
	}
	if n := len(h.Manifest().Commands); n != 3 {
		t.Errorf("%d commands recorded, want 3 (a repeated command once)", n)
	}
}

func TestWriteRefusesNonEmptyDir(t *testing.T) {
	dir := record(t)
	rec := NewRecorder(source(t))
	if _, err := rec.Write(dir, "h", "v", time.Now()); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Write over a snapshot: %v", err)
	}
}

func TestOpenRejects(t *testing.T) {
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{"not JSON", "{", "manifest"},
		{"no goos", `{"goarch":"amd64"}`, "no goos"},
		{"command without argv", `{"goos":"linux","commands":[{"argv":[]}]}`, "no argv"},
		{"stdout outside the snapshot", `{"goos":"linux","commands":[{"argv":["x"],"stdout":"../../etc/passwd"}]}`, "leaves the snapshot"},
		{"absolute stdout", `{"goos":"linux","commands":[{"argv":["x"],"stdout":"/etc/passwd"}]}`, "leaves the snapshot"},
		{"WMI rows outside", `{"goos":"windows","wmi":[{"namespace":"n","query":"q","result":"../x.json"}]}`, "leaves the snapshot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(tc.manifest), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := Open(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(empty dir) = %v, want not found", err)
	}
}

func TestFileReadsStayInsideTheSnapshot(t *testing.T) {
	dir := record(t)
	h, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReadFile("/../../manifest.json", 0); err == nil {
		t.Fatal("a ../ path read outside fs/")
	}
}

func TestMissingOutputFileIsAnError(t *testing.T) {
	dir := record(t)
	if err := os.Remove(filepath.Join(dir, "commands", "0.out")); err != nil {
		t.Fatal(err)
	}
	h, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(context.Background(), "fdesetup", "status"); err == nil || !strings.Contains(err.Error(), "lacks commands/0.out") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"goos":"linux","commands":[{"argv":["uname","-m"],"stdout":"commands/0.out"}]}`))
	f.Add([]byte(`{"goos":"windows","wmi":[{"namespace":"n","query":"q","result":"wmi/0.json"}],"registry":[{"key":"k","name":"n","value":{"type":"DWORD","int":1}}]}`))
	f.Add([]byte(`{"goos":"darwin","files":[{"path":"/x","missing":true}],"dirs":[{"path":"/d","entries":[{"name":"a"}]}],"globs":[{"pattern":"/d/*","matches":["/d/a"]}]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parse(dir, b)
		if err != nil {
			return
		}
		// Whatever the manifest says, replaying must not panic.
		ctx := context.Background()
		for _, c := range h.m.Commands {
			h.Run(ctx, c.Argv...)
		}
		var rows []map[string]any
		for _, q := range h.m.WMI {
			h.WMI(ctx, q.Namespace, q.Query, &rows)
		}
		for _, r := range h.m.Registry {
			h.Registry(r.Key, r.Name)
		}
		for _, d := range h.m.Dirs {
			h.ReadDir(d.Path)
		}
		for _, fl := range h.m.Files {
			h.ReadFile(fl.Path, 0)
		}
	})
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`Acquire::http::Proxy "http://alice:s3cr3t@proxy.corp:3128";`, `Acquire::http::Proxy "http://REDACTED@proxy.corp:3128";`},
		{`<repo url="https://user:tok@updates.suse.com/SLE"/>`, `<repo url="https://REDACTED@updates.suse.com/SLE"/>`},
		{"authentication-password='hunter2'\n", "authentication-password=\"REDACTED\"\n"},
		{"api_key: abc123\nname: x\n", "api_key: \"REDACTED\"\nname: x\n"},
		// Not secrets: left alone, so replays parse the same text.
		{"gnome-keyring-secret-daemon\nclamd\n", "gnome-keyring-secret-daemon\nclamd\n"},
		{`{"nftables": [{"chain": {"policy": "drop"}}]}`, `{"nftables": [{"chain": {"policy": "drop"}}]}`},
		{"Inst libssl3 [3.0.15] (3.0.17 Debian-Security:12/stable-security [amd64])\n", "Inst libssl3 [3.0.15] (3.0.17 Debian-Security:12/stable-security [amd64])\n"},
	} {
		if got := string(Redact([]byte(tc.in))); got != tc.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestWriteRedactsAndRestricts(t *testing.T) {
	root := t.TempDir()
	rec := NewRecorder(platformtest.Replay{Live: &platform.Live{Root: root}, OS: "linux", Commands: map[string]platform.Result{
		"apt-config dump": {Stdout: []byte("APT::Periodic::Unattended-Upgrade \"1\";\nAcquire::http::Proxy \"http://bob:pw@proxy:3128\";\n")}}})
	rec.Run(context.Background(), "apt-config", "dump")
	dir := filepath.Join(t.TempDir(), "snap")
	if _, err := rec.Write(dir, "h", "v", time.Now()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "commands", "0.out"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "bob:pw") || !strings.Contains(string(b), `Unattended-Upgrade "1"`) {
		t.Fatalf("recorded output:\n%s", b)
	}
	if st, _ := os.Stat(filepath.Join(dir, "commands", "0.out")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}

// A snapshot is untrusted input: links inside it must not reach host files.
func TestReplayDoesNotFollowLinksOut(t *testing.T) {
	dir := record(t)
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "fs", "etc", "linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "commands", "0.out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "commands", "0.out")); err != nil {
		t.Fatal(err)
	}
	h, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := h.ReadFile("/etc/linked", 0); err == nil || strings.Contains(string(b), "host data") {
		t.Errorf("ReadFile through a link out of the snapshot = %q, %v", b, err)
	}
	if res, err := h.Run(context.Background(), "fdesetup", "status"); err == nil || strings.Contains(string(res.Stdout), "host data") {
		t.Errorf("command output through a link out of the snapshot = %q, %v", res.Stdout, err)
	}
}

// TestReplayRefusesLinkedFS: a snapshot whose fs/ directory is itself a
// symbolic link (to the host's root, say) is refused when opened.
func TestReplayRefusesLinkedFS(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges on Windows")
	}
	dir := record(t)
	if err := os.RemoveAll(filepath.Join(dir, "fs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(dir, "fs")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "fs is a symbolic link") {
		t.Fatalf("Open of a snapshot with fs -> / = %v", err)
	}
}
