package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"howett.net/plist"
)

const (
	fileSecret    = "evt1.FILESECRETVALUE00000.1111111111111111111111111111111111111111111111111111111111111111"
	managedSecret = "evt1.MANAGEDSECRETVALUE00.2222222222222222222222222222222222222222222222222222222222222222"
	envSecret     = "evt1.ENVSECRETVALUE000000.3333333333333333333333333333333333333333333333333333333333333333"
)

// mapManaged is a managed store with fixed values: the registry of a
// Windows host, which cannot exist here (FromRegistry's conversion is
// tested on its own).
type mapManaged map[string]string

func (m mapManaged) Read() (map[string]string, error) { return m, nil }
func (m mapManaged) Origin() string                   { return `HKLM\` + ManagedPolicyKey }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrecedence resolves one setting from every combination of the four
// sources and checks the winner and the source `config show` names.
func TestPrecedence(t *testing.T) {
	file := writeTemp(t, "agent.yaml", "# comment\nserver: file.example.com:443\nenroll_secret: "+fileSecret+"\ninterval: 2h\nlog_level: warn\n")
	managed := PlistFile("testdata/managed.plist")
	for _, tc := range []struct {
		name       string
		managed    Managed
		env        map[string]string
		flags      map[string]string
		wantServer string
		wantSource Source
		wantOrigin string
	}{
		{"file only", nil, nil, nil, "file.example.com:443", FromFile, file},
		{"managed over file", managed, nil, nil, "managed.example.com:8443", FromManaged, "testdata/managed.plist Server"},
		{"env over managed", managed, map[string]string{"EVIDENT_SERVER": "env.example.com:1"}, nil, "env.example.com:1", FromEnv, "EVIDENT_SERVER"},
		{"flag over env", managed, map[string]string{"EVIDENT_SERVER": "env.example.com:1"}, map[string]string{Server: "flag.example.com:2"}, "flag.example.com:2", FromFlag, "--server"},
		{"flag over file", nil, nil, map[string]string{Server: "flag.example.com:2"}, "flag.example.com:2", FromFlag, "--server"},
		{"env over file", nil, map[string]string{"EVIDENT_SERVER": "env.example.com:1"}, nil, "env.example.com:1", FromEnv, "EVIDENT_SERVER"},
		{"registry over file", mapManaged{"Server": "gpo.example.com:9"}, nil, nil, "gpo.example.com:9", FromManaged, `HKLM\SOFTWARE\Policies\Evident\Agent Server`},
		{"empty env value does not override", managed, map[string]string{"EVIDENT_SERVER": ""}, nil, "managed.example.com:8443", FromManaged, "testdata/managed.plist Server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(Inputs{Env: Environment{LookupEnv: envOf(tc.env), Managed: tc.managed, DefaultFile: file}, Flags: tc.flags})
			if err != nil {
				t.Fatal(err)
			}
			v, _ := c.Value(Server)
			if v.Value != tc.wantServer || v.Source != tc.wantSource || v.Origin != tc.wantOrigin {
				t.Errorf("server = %q from %s %q; want %q from %s %q", v.Value, v.Source, v.Origin, tc.wantServer, tc.wantSource, tc.wantOrigin)
			}
		})
	}

	// All four at once, each winning a different setting.
	c, err := Load(Inputs{
		Env:   Environment{LookupEnv: envOf(map[string]string{"EVIDENT_ENROLL_SECRET": envSecret, "EVIDENT_INTERVAL": "45m"}), Managed: managed, DefaultFile: file, Defaults: map[string]string{DataDir: "/default/dir", CollectorTimeout: "30s"}},
		Flags: map[string]string{Interval: "5m"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		name, value string
		src         Source
	}{
		{Server, "managed.example.com:8443", FromManaged},
		{EnrollSecret, envSecret, FromEnv},
		{Interval, "5m", FromFlag},
		{LogLevel, "debug", FromManaged},
		{OutboxMaxBytes, "33554432", FromManaged},
		{DataDir, "/default/dir", FromDefault},
		{CollectorTimeout, "30s", FromDefault},
		{TPM, "", FromDefault},
	} {
		v, _ := c.Value(want.name)
		if v.Value != want.value || v.Source != want.src {
			t.Errorf("%s = %q from %s; want %q from %s", want.name, v.Value, v.Source, want.value, want.src)
		}
	}
	if len(c.Values()) != len(Keys()) {
		t.Errorf("Values() lists %d settings, want %d", len(c.Values()), len(Keys()))
	}
}

func TestEnvAlias(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
		from string
	}{
		{map[string]string{"EVIDENT_ENROLL_TOKEN": envSecret}, envSecret, "EVIDENT_ENROLL_TOKEN"},
		{map[string]string{"EVIDENT_ENROLL_TOKEN": fileSecret, "EVIDENT_ENROLL_SECRET": envSecret}, envSecret, "EVIDENT_ENROLL_SECRET"},
	} {
		c, err := Load(Inputs{Env: Environment{LookupEnv: envOf(tc.env)}})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := c.Value(EnrollSecret)
		if v.Value != tc.want || v.Origin != tc.from {
			t.Errorf("enroll_secret = %q from %s; want %q from %s", v.Value, v.Origin, tc.want, tc.from)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	for _, tc := range []struct {
		name    string
		in      Inputs
		want    string
		invalid bool
	}{
		{"unknown key", Inputs{Env: Environment{DefaultFile: writeTemp(t, "a.yaml", "sever: x:1\n")}}, `unknown setting "sever"`, true},
		{"not a mapping", Inputs{Env: Environment{DefaultFile: writeTemp(t, "a.yaml", "- a\n- b\n")}}, "want a mapping", true},
		{"nested value", Inputs{Env: Environment{DefaultFile: writeTemp(t, "a.yaml", "server:\n  a: b\n")}}, "want a single value", true},
		{"duplicate key", Inputs{Env: Environment{DefaultFile: writeTemp(t, "a.yaml", "server: a:1\nserver: b:2\n")}}, "", true},
		{"bad yaml", Inputs{Env: Environment{DefaultFile: writeTemp(t, "a.yaml", "server: [\n")}}, "", true},
		{"explicit file missing", Inputs{File: missing}, "no such file", true},
		{"EVIDENT_CONFIG missing", Inputs{Env: Environment{LookupEnv: envOf(map[string]string{EnvConfigFile: missing})}}, "no such file", true},
		{"file too large", Inputs{Env: Environment{DefaultFile: writeTemp(t, "a.yaml", "# "+strings.Repeat("x", MaxFileBytes)+"\n")}}, "larger than", true},
		{"bad server from env", Inputs{Env: Environment{LookupEnv: envOf(map[string]string{"EVIDENT_SERVER": "no-port"})}}, `server "no-port" from environment EVIDENT_SERVER: want HOST:PORT`, true},
		{"bad port", Inputs{Flags: map[string]string{Server: "h:99999"}}, "port must be", true},
		{"bad replica in a list", Inputs{Env: Environment{DefaultFile: writeTemp(t, "a.yaml", "server: a.example:8443,b.example\n")}},
			`server "a.example:8443,b.example" from config file`, true},
		{"bad replica named", Inputs{Flags: map[string]string{Server: "a.example:8443,,b.example:8443"}}, `address 2 "": empty`, true},
		{"bad duration from managed", Inputs{Env: Environment{Managed: mapManaged{"Interval": "soon"}}}, `interval "soon" from managed`, true},
		{"negative duration", Inputs{Flags: map[string]string{CollectorTimeout: "-1s"}}, "must be positive", true},
		{"bad log level", Inputs{Flags: map[string]string{LogLevel: "loud"}}, "want debug", true},
		{"bad log format", Inputs{Flags: map[string]string{LogFormat: "xml"}}, "want text or json", true},
		{"bad bytes", Inputs{Flags: map[string]string{OutboxMaxBytes: "lots"}}, "positive number", true},
		{"bad secret is not echoed", Inputs{Flags: map[string]string{EnrollSecret: "hunter2-is-my-password"}}, "<redacted, 22 characters>", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.in)
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error echoes the secret: %v", err)
			}
			if tc.invalid != errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = %v", !tc.invalid)
			}
		})
	}
	// A missing default file is no error: the agent runs on the other sources.
	if _, err := Load(Inputs{Env: Environment{DefaultFile: missing}}); err != nil {
		t.Errorf("missing default file: %v", err)
	}
}

func TestParseFileAcceptsShippedForms(t *testing.T) {
	for _, body := range []string{"", "# only comments\n#server: x:1\n", "---\n", "server: ~\n", "server:\n"} {
		got, err := ParseFile([]byte(body))
		if err != nil || len(got) != 0 {
			t.Errorf("ParseFile(%q) = %v, %v; want empty", body, got, err)
		}
	}
}

func TestManagedUnknownKeysWarn(t *testing.T) {
	c, err := Load(Inputs{Env: Environment{Managed: mapManaged{"Server": "a.example:1", "Sever": "typo"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], `"Sever"`) {
		t.Errorf("warnings %q", c.Warnings)
	}
}

func TestParsePlist(t *testing.T) {
	xml, err := os.ReadFile("testdata/managed.plist")
	if err != nil {
		t.Fatal(err)
	}
	// macOS usually stores managed preferences as binary property lists.
	var raw map[string]any
	if _, err := plist.Unmarshal(xml, &raw); err != nil {
		t.Fatal(err)
	}
	bin, err := plist.Marshal(raw, plist.BinaryFormat)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"xml": xml, "binary": bin} {
		got, err := ParsePlist(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got["Server"] != "managed.example.com:8443" || got["OutboxMaxBytes"] != "33554432" || got["EnrollSecret"] != managedSecret {
			t.Errorf("%s: %v", name, got)
		}
	}
	for name, b := range map[string]string{
		"truncated":   string(xml[:len(xml)/2]),
		"array value": `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>Server</key><array><string>a</string></array></dict></plist>`,
		"not a dict":  `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><string>x</string></plist>`,
	} {
		if _, err := ParsePlist([]byte(b)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	// An unknown key with a dict value (another tool's setting in the same
	// profile) is a warning, not a failure.
	got, err := ParsePlist([]byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>Server</key><string>a.example:1</string><key>Extra</key><dict><key>x</key><true/></dict></dict></plist>`))
	if err != nil || got["Server"] != "a.example:1" {
		t.Fatalf("unknown dict value: %v, %v", got, err)
	}
	c, err := Load(Inputs{Env: Environment{Managed: mapManaged(got)}})
	if err != nil || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], `"Extra"`) {
		t.Errorf("warnings %q, %v", c.Warnings, err)
	}
	// No profile installed: no managed settings, no error.
	got, err = PlistFile(filepath.Join(t.TempDir(), "none.plist")).Read()
	if err != nil || len(got) != 0 {
		t.Errorf("missing plist: %v, %v", got, err)
	}
}

func TestFromRegistry(t *testing.T) {
	got, err := FromRegistry(map[string]any{"Server": "gpo.example.com:443", "OutboxMaxBytes": uint64(1 << 25)})
	if err != nil || got["Server"] != "gpo.example.com:443" || got["OutboxMaxBytes"] != "33554432" {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := FromRegistry(map[string]any{"Server": []string{"a", "b"}}); err == nil || !strings.Contains(err.Error(), "Server") {
		t.Errorf("multi-string accepted: %v", err)
	}
	// An unknown value of any type is kept (empty) for Load to warn about,
	// never fatal: other software may share the key.
	got, err = FromRegistry(map[string]any{"Server": "a.example:1", "Legacy": []string{"x"}})
	if err != nil || got["Legacy"] != "" || got["Server"] != "a.example:1" {
		t.Errorf("unknown multi-string: %v, %v", got, err)
	}
}

func TestRedact(t *testing.T) {
	if got := Redact(managedSecret); strings.Contains(got, "MANAGEDSECRET") || !strings.HasSuffix(got, "2222") {
		t.Errorf("Redact = %q", got)
	}
	v := Value{Key: keys[1], Value: "plain-password"}
	if v.Display() == "plain-password" {
		t.Error("secret displayed")
	}
}

func TestWriteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "evident")
	path := filepath.Join(dir, "agent.yaml")
	shipped := "# Evident agent configuration.\n# server: HOST:PORT\n#server: other example\n# log_level: info\ninterval: 1h # every hour\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(shipped), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, map[string]string{Server: "evident.example.com:8443", EnrollSecret: fileSecret}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := "# Evident agent configuration.\nserver: evident.example.com:8443\n#server: other example\n# log_level: info\ninterval: 1h # every hour\nenroll_secret: " + fileSecret + "\n"
	if string(b) != want {
		t.Errorf("file:\n%s\nwant:\n%s", b, want)
	}
	if runtime.GOOS != "windows" {
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", st.Mode().Perm())
		}
	}
	// Replace in place; a value YAML must quote round-trips, and so does a
	// list of server replicas.
	replicas := "[::1]:8443, evident-2.example.com:8443"
	if err := WriteFile(path, map[string]string{Server: replicas, TPMEventLog: "/tmp/a: b#c"}); err != nil {
		t.Fatal(err)
	}
	got, err := Load(Inputs{Env: Environment{DefaultFile: path}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Get(Server) != replicas || got.Get(TPMEventLog) != "/tmp/a: b#c" || got.Get(Interval) != "1h" || got.Get(EnrollSecret) != fileSecret {
		t.Errorf("after rewrite: %v", got.values)
	}
	// New file in a new directory.
	fresh := filepath.Join(t.TempDir(), "new", "agent.yaml")
	if err := WriteFile(fresh, map[string]string{Server: "a.example:1"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(fresh); string(b) != "server: a.example:1\n" {
		t.Errorf("fresh file %q", b)
	}
	// Refusals leave the file alone.
	before, _ := os.ReadFile(path)
	for name, set := range map[string]map[string]string{
		"unknown":   {"sever": "x:1"},
		"bad value": {Server: "no-port"},
		"newline":   {MachineID: "a\nb"},
	} {
		if err := WriteFile(path, set); err == nil {
			t.Errorf("%s: written", name)
		}
	}
	broken := writeTemp(t, "broken.yaml", "server: [\n")
	if err := WriteFile(broken, map[string]string{Server: "a.example:1"}); err == nil {
		t.Error("rewrote a file that does not parse")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a refused write changed the file")
	}
}
