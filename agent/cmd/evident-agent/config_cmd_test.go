package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/evident-dev/evident/agent/config"
	"github.com/evident-dev/evident/internal/cli"
)

const (
	testSecretFile    = "evt1.FILESECRETVALUE00000.1111111111111111111111111111111111111111111111111111111111111111"
	testSecretManaged = "evt1.MANAGEDSECRETVALUE00.2222222222222222222222222222222222222222222222222222222222222222"
)

const managedPlist = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Server</key><string>managed.example.com:8443</string>
	<key>EnrollSecret</key><string>` + testSecretManaged + `</string>
	<key>LogLevel</key><string>debug</string>
</dict>
</plist>
`

// testApp is the CLI with every source under the test's control: a config
// file, a managed-preferences plist (the macOS store; the Windows registry
// goes through the same Managed interface), and an environment.
func testApp(t *testing.T, env map[string]string) (app, *bytes.Buffer, *bytes.Buffer, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	body := "# test\nserver: file.example.com:443\nenroll_secret: " + testSecretFile + "\ninterval: 2h\nlog_level: warn\ncollector_timeout: 45s\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	plist := filepath.Join(dir, "com.evident.agent.plist")
	if err := os.WriteFile(plist, []byte(managedPlist), 0o644); err != nil {
		t.Fatal(err)
	}
	if env == nil {
		env = map[string]string{}
	}
	var stdout, stderr bytes.Buffer
	a := app{stdout: &stdout, stderr: &stderr, env: config.Environment{
		LookupEnv:   func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Managed:     config.PlistFile(plist),
		DefaultFile: file,
		Defaults:    map[string]string{config.DataDir: filepath.Join(dir, "data"), config.CollectorTimeout: "1m0s"},
	}}
	return a, &stdout, &stderr, dir
}

// TestConfigShowSources: each of the four sources wins one setting, and
// config show names it, with the secret redacted.
func TestConfigShowSources(t *testing.T) {
	a, stdout, stderr, dir := testApp(t, map[string]string{"EVIDENT_LOG_LEVEL": "error", "EVIDENT_INTERVAL": "20m"})
	if code := a.run([]string{"config", "show", "--interval", "5m"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	out := stdout.String()
	for _, want := range []string{
		`server\s+managed.example.com:8443\s+managed\s+` + regexp.QuoteMeta(filepath.Join(dir, "com.evident.agent.plist")) + ` Server`,
		`enroll_secret\s+evt1.<redacted>.…2222\s+managed`,
		`log_level\s+error\s+environment\s+EVIDENT_LOG_LEVEL`,
		`interval\s+5m\s+flag\s+--interval`,
		`collector_timeout\s+45s\s+config file\s+` + regexp.QuoteMeta(filepath.Join(dir, "agent.yaml")),
		`data_dir\s+\S+data\s+default`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("config show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "MANAGEDSECRET") || strings.Contains(out, "FILESECRET") {
		t.Errorf("config show prints a secret:\n%s", out)
	}

	stdout.Reset()
	if code := a.run([]string{"config", "show", "--json"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var js struct {
		Settings []struct{ Setting, Value, Source, Origin string }
	}
	if err := json.Unmarshal(stdout.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range js.Settings {
		got[s.Setting] = s.Source
	}
	want := map[string]string{"server": "managed", "interval": "environment", "collector_timeout": "config file", "data_dir": "default"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("json %s source %q, want %q", k, got[k], v)
		}
	}
}

func TestConfigCheckAndWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantErr  string
	}{
		{"configured by file and managed", []string{"config", "check", "--quiet"}, nil, 0, ""},
		{"invalid env value", []string{"config", "check"}, map[string]string{"EVIDENT_SERVER": "nope"}, 78, "want HOST:PORT"},
		{"unknown subcommand", []string{"config", "frobnicate"}, nil, 2, "unknown config command"},
		{"write needs a setting", []string{"config", "write"}, nil, 2, "needs at least one setting"},
		{"write refuses a bad value", []string{"config", "write", "--server", "noport"}, nil, 78, "want HOST:PORT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _, stderr, _ := testApp(t, tc.env)
			if code := a.run(tc.args); code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d containing %q", code, stderr, tc.wantCode, tc.wantErr)
			}
		})
	}

	// Unconfigured: check fails saying what is missing; write fixes it.
	a, stdout, stderr, dir := testApp(t, nil)
	empty := filepath.Join(dir, "empty.yaml")
	a.env.Managed = nil
	a.env.DefaultFile = empty
	if code := a.run([]string{"config", "check"}); code != 1 || !strings.Contains(stderr.String(), "server and enroll_secret not set") {
		t.Fatalf("unconfigured check: exit %d, %q", code, stderr)
	}
	if code := a.run([]string{"config", "write", "--server", "evident.example.com:8443", "--enroll-secret", testSecretFile}); code != 0 {
		t.Fatalf("write: exit %d, %q", code, stderr)
	}
	if st, err := os.Stat(empty); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v %v", st, err)
	}
	stdout.Reset()
	if code := a.run([]string{"config", "check"}); code != 0 || !strings.Contains(stdout.String(), "will enroll with evident.example.com:8443") {
		t.Fatalf("configured check: exit %d, %q %q", code, stdout, stderr)
	}
}

func TestEnrollSecretFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantErr  string
	}{
		{"stdin", []string{"--enroll-secret-file", "-"}, "  " + testSecretFile + "\n", 0, ""},
		{"both", []string{"--enroll-secret-file", "-", "--enroll-secret", testSecretFile}, testSecretFile, 2, "not both"},
		{"bad secret", []string{"--enroll-secret-file", "-"}, "hunter2hunter2", 78, "enroll_secret"},
		{"too large", []string{"--enroll-secret-file", "-"}, strings.Repeat("x", maxSecretFile+1), 1, "larger than"},
		{"missing file", []string{"--enroll-secret-file", "/nonexistent/secret"}, "", 1, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, stdout, stderr, dir := testApp(t, nil)
			a.stdin = strings.NewReader(tc.stdin)
			path := filepath.Join(dir, "written.yaml")
			code := a.run(append([]string{"config", "write", "--config", path}, tc.args...))
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d containing %q", code, stderr, tc.wantCode, tc.wantErr)
			}
			if strings.Contains(stderr.String(), "hunter2") {
				t.Errorf("error echoes the secret: %q", stderr)
			}
			if tc.wantCode != 0 {
				return
			}
			b, _ := os.ReadFile(path)
			if string(b) != "enroll_secret: "+testSecretFile+"\n" || !strings.Contains(stdout.String(), "wrote 1 setting") {
				t.Errorf("file %q, stdout %q", b, stdout)
			}
		})
	}
}

func TestPurgeable(t *testing.T) {
	root := t.TempDir()
	agentDir := filepath.Join(root, "agent")
	os.MkdirAll(filepath.Join(agentDir, "identity"), 0o700)
	os.WriteFile(filepath.Join(agentDir, "outbox.db"), nil, 0o600)
	other := filepath.Join(root, "other")
	os.MkdirAll(other, 0o700)
	os.WriteFile(filepath.Join(other, "passwd"), nil, 0o600)
	for _, tc := range []struct {
		dir  string
		want string
	}{
		{agentDir, ""},
		{filepath.Join(root, "missing"), ""},
		{"/", "too close to the file system root"},
		{"/var", "too close to the file system root"},
		{other, `holds "passwd"`},
	} {
		err := purgeable(tc.dir)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("purgeable(%s) = %v; want %q", tc.dir, err, tc.want)
		}
	}
}

// TestInvalidSettingsAsService: as a service an invalid setting is logged
// and waited on (until the service is stopped); in the foreground it is
// exit 78 at once.
func TestInvalidSettingsAsService(t *testing.T) {
	a, _, stderr, _ := testApp(t, map[string]string{"EVIDENT_INTERVAL": "soon"})
	st := a.settings(cliFlagSet(a), runSettings...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.loadSettings(ctx, st, true); !errors.Is(err, context.Canceled) {
		t.Errorf("service: err %v, want to wait until stopped", err)
	}
	if !strings.Contains(stderr.String(), `invalid settings; waiting for them to be fixed`) || !strings.Contains(stderr.String(), "EVIDENT_INTERVAL") {
		t.Errorf("service log: %q", stderr)
	}
	_, err := a.loadSettings(context.Background(), st, false)
	if code := cli.ExitCode("x", err, io.Discard); code != 78 {
		t.Errorf("foreground: err %v, exit %d; want 78", err, code)
	}
}

func cliFlagSet(a app) *flag.FlagSet { return cli.NewFlagSet("test", a.stderr, "test") }

// TestSecretFileReadOnce: install reads the settings given, then loads the
// configuration; a secret piped on standard input must survive both (and a
// service's later reloads), not be replaced by the empty second read.
func TestSecretFileReadOnce(t *testing.T) {
	a, _, _, _ := testApp(t, nil)
	a.env.Managed = nil
	a.stdin = strings.NewReader(testSecretManaged + "\n")
	fs := cliFlagSet(a)
	st := a.settings(fs, config.Server, config.EnrollSecret)
	if err := fs.Parse([]string{"--enroll-secret-file", "-"}); err != nil {
		t.Fatal(err)
	}
	set, err := st.set()
	if err != nil || set[config.EnrollSecret] != testSecretManaged {
		t.Fatalf("set: %v, %v", set, err)
	}
	for i := range 2 {
		cfg, err := st.load()
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := cfg.Value(config.EnrollSecret); v.Value != testSecretManaged || v.Source != config.FromFlag {
			t.Errorf("load %d: enroll_secret %q from %s; want the piped secret from the flag", i, v.Display(), v.Source)
		}
	}
}
