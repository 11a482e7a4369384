// Package config resolves evident-agent's settings from its four sources, in
// order of precedence: command-line flags, EVIDENT_* environment variables,
// MDM-managed settings (the macOS managed preferences domain
// com.evident.agent; the Windows registry key
// HKLM\SOFTWARE\Policies\Evident\Agent) and the config file (agent.yaml). It
// records where each value came from, so `evident-agent config show` can say,
// and writes the config file with permissions only the system can read.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/evident-dev/evident/agent/serverlist"
	"github.com/evident-dev/evident/internal/enrolltoken"
	"github.com/evident-dev/evident/platform"
)

// Setting names (the config file's keys).
const (
	Server           = "server"
	EnrollSecret     = "enroll_secret"
	DataDir          = "data_dir"
	TPM              = "tpm"
	TPMEventLog      = "tpm_event_log"
	Interval         = "interval"
	CollectorTimeout = "collector_timeout"
	LogLevel         = "log_level"
	LogFormat        = "log_format"
	OutboxMaxBytes   = "outbox_max_bytes"
	MachineID        = "machine_id"
	MetricsListen    = "metrics_listen"
)

// EnvConfigFile names the config file in the environment.
const EnvConfigFile = "EVIDENT_CONFIG"

// MaxFileBytes bounds the config file and the managed settings read.
const MaxFileBytes = 64 << 10

// Key describes one setting and its name in each source.
type Key struct {
	Name     string // config file key and flag name with "-" for "_"
	Env      string // environment variable
	EnvAlias string // an older environment variable still honoured
	Managed  string // MDM-managed value name (plist key, registry value)
	Secret   bool   // redacted in `config show`
	Help     string
	check    func(string) error
}

// Flag is the command-line flag name of the setting.
func (k Key) Flag() string { return strings.ReplaceAll(k.Name, "_", "-") }

var keys = []Key{
	{Name: Server, Env: "EVIDENT_SERVER", Managed: "Server", check: checkServer,
		Help: "server address HOST:PORT, or several comma-separated (replicas; at most 16)"},
	{Name: EnrollSecret, Env: "EVIDENT_ENROLL_SECRET", EnvAlias: "EVIDENT_ENROLL_TOKEN", Managed: "EnrollSecret", Secret: true, check: checkSecret,
		Help: "enrollment token evt1.… printed by `evident-server secret create`; used once, to enroll"},
	{Name: DataDir, Env: "EVIDENT_DATA_DIR", Managed: "DataDir", check: checkPath,
		Help: "agent data directory: identity, outbox, status socket"},
	{Name: TPM, Env: "EVIDENT_TPM", Managed: "TPM",
		Help: "TPM: auto, none, a device path, swtpm:HOST:PORT or unix:PATH"},
	{Name: TPMEventLog, Env: "EVIDENT_TPM_EVENT_LOG", Managed: "TPMEventLog", check: checkPath,
		Help: "TCG firmware event log sent with quotes (default: the platform's)"},
	{Name: Interval, Env: "EVIDENT_INTERVAL", Managed: "Interval", check: checkDuration,
		Help: "time between collection cycles"},
	{Name: CollectorTimeout, Env: "EVIDENT_COLLECTOR_TIMEOUT", Managed: "CollectorTimeout", check: checkDuration,
		Help: "per-collector timeout"},
	{Name: LogLevel, Env: "EVIDENT_LOG_LEVEL", Managed: "LogLevel", check: checkLogLevel,
		Help: "debug, info, warn or error"},
	{Name: LogFormat, Env: "EVIDENT_LOG_FORMAT", Managed: "LogFormat", check: checkLogFormat,
		Help: "text, or json (one JSON object a line, for a SIEM)"},
	{Name: OutboxMaxBytes, Env: "EVIDENT_OUTBOX_MAX_BYTES", Managed: "OutboxMaxBytes", check: checkBytes,
		Help: "outbox size bound in bytes"},
	{Name: MachineID, Env: "EVIDENT_MACHINE_ID", Managed: "MachineID",
		Help: "hardware identity override for cloned VMs"},
	{Name: MetricsListen, Env: "EVIDENT_METRICS_LISTEN", Managed: "MetricsListen", check: checkLoopback,
		Help: "serve Prometheus metrics, /healthz and /readyz on this loopback address, e.g. 127.0.0.1:9465 (empty: off)"},
}

// Keys lists every setting, in display order.
func Keys() []Key { return slices.Clone(keys) }

// ManagedKeys lists the MDM-managed value names.
func ManagedKeys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Managed
	}
	return out
}

// Lookup returns the setting called name.
func Lookup(name string) (Key, bool) {
	for _, k := range keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

// Source says where a value came from.
type Source int

// Sources, lowest precedence first.
const (
	FromDefault Source = iota
	FromFile
	FromManaged
	FromEnv
	FromFlag
)

func (s Source) String() string {
	return [...]string{"default", "config file", "managed", "environment", "flag"}[s]
}

// Value is one resolved setting.
type Value struct {
	Key    Key
	Value  string
	Source Source
	// Origin names the source precisely: the file path, the managed domain
	// or registry key, the environment variable, or the flag.
	Origin string
}

// Display is the value as `config show` prints it: secrets redacted.
func (v Value) Display() string {
	if v.Key.Secret && v.Value != "" {
		return Redact(v.Value)
	}
	return v.Value
}

// Redact hides a secret, keeping enough to tell two apart: the token's
// version and the last four characters of its CA pin.
func Redact(s string) string {
	if t, err := enrolltoken.Parse(s); err == nil {
		return "evt1.<redacted>." + "…" + t.CAPin[len(t.CAPin)-4:]
	}
	return fmt.Sprintf("<redacted, %d characters>", len(s))
}

// Managed is an MDM-managed settings store.
type Managed interface {
	// Read returns the managed values by managed name. A store that does
	// not exist (no profile installed, no policy key) is empty, not an
	// error.
	Read() (map[string]string, error)
	// Origin names the store for `config show`.
	Origin() string
}

// Environment is the process's view of the sources other than flags.
type Environment struct {
	LookupEnv   func(string) (string, bool)
	Managed     Managed // nil where the platform has none
	DefaultFile string  // the platform's config file path
	Defaults    map[string]string
}

// Inputs is what Load resolves.
type Inputs struct {
	Env Environment
	// File overrides the config file path (--config); a file named
	// explicitly (here or by EVIDENT_CONFIG) must exist.
	File string
	// Flags holds the flags set on the command line, by setting name.
	Flags map[string]string
}

// Config is the resolved configuration.
type Config struct {
	File     string // the config file consulted
	values   map[string]Value
	Warnings []string // e.g. unknown managed values: reported, not fatal
}

// ErrInvalid marks a configuration that cannot be used: a malformed file or
// a bad value. The agent exits with EX_CONFIG (78) so service managers do not
// restart it in a loop.
var ErrInvalid = errors.New("invalid configuration")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Load resolves every setting.
func Load(in Inputs) (*Config, error) {
	env := in.Env
	if env.LookupEnv == nil {
		env.LookupEnv = func(string) (string, bool) { return "", false }
	}
	c := &Config{values: map[string]Value{}}
	for _, k := range keys {
		if d := env.Defaults[k.Name]; d != "" {
			c.values[k.Name] = Value{Key: k, Value: d, Source: FromDefault, Origin: "built-in default"}
		}
	}

	// The config file.
	path, required := env.DefaultFile, false
	if p, ok := env.LookupEnv(EnvConfigFile); ok && p != "" {
		path, required = p, true
	}
	if in.File != "" {
		path, required = in.File, true
	}
	c.File = path
	if path != "" {
		b, err := readBounded(path)
		switch {
		case errors.Is(err, os.ErrNotExist) && !required:
		case err != nil:
			return nil, invalid("config file: %v", err)
		default:
			fv, err := ParseFile(b)
			if err != nil {
				return nil, invalid("%s: %v", path, err)
			}
			for name, v := range fv {
				k, _ := Lookup(name)
				c.values[name] = Value{Key: k, Value: v, Source: FromFile, Origin: path}
			}
		}
	}

	// MDM-managed settings.
	if env.Managed != nil {
		mv, err := env.Managed.Read()
		if err != nil {
			return nil, invalid("managed settings %s: %v", env.Managed.Origin(), err)
		}
		for _, k := range keys {
			if v, ok := mv[k.Managed]; ok && v != "" {
				c.values[k.Name] = Value{Key: k, Value: v, Source: FromManaged, Origin: env.Managed.Origin() + " " + k.Managed}
			}
		}
		for name := range mv {
			if !slices.Contains(ManagedKeys(), name) {
				c.Warnings = append(c.Warnings, fmt.Sprintf("managed settings %s: unknown value %q ignored (known: %s)", env.Managed.Origin(), name, strings.Join(ManagedKeys(), ", ")))
			}
		}
		slices.Sort(c.Warnings)
	}

	// The environment.
	for _, k := range keys {
		for _, name := range []string{k.EnvAlias, k.Env} {
			if name == "" {
				continue
			}
			if v, ok := env.LookupEnv(name); ok && v != "" {
				c.values[k.Name] = Value{Key: k, Value: v, Source: FromEnv, Origin: name}
			}
		}
	}

	// Flags.
	for name, v := range in.Flags {
		k, ok := Lookup(name)
		if !ok {
			return nil, fmt.Errorf("config: unknown flag setting %q", name)
		}
		c.values[name] = Value{Key: k, Value: v, Source: FromFlag, Origin: "--" + k.Flag()}
	}

	for _, k := range keys {
		v, ok := c.values[k.Name]
		if !ok || k.check == nil || v.Value == "" {
			continue
		}
		if err := k.check(v.Value); err != nil {
			shown := v.Display()
			return nil, invalid("%s %q from %s %s: %v", k.Name, shown, v.Source, v.Origin, err)
		}
	}
	return c, nil
}

// Get returns a setting's value ("" when unset).
func (c *Config) Get(name string) string { return c.values[name].Value }

// Value returns a setting with its source.
func (c *Config) Value(name string) (Value, bool) {
	v, ok := c.values[name]
	return v, ok
}

// Values lists every setting in display order; unset ones have Source
// FromDefault and an empty value.
func (c *Config) Values() []Value {
	out := make([]Value, 0, len(keys))
	for _, k := range keys {
		v, ok := c.values[k.Name]
		if !ok {
			v = Value{Key: k, Source: FromDefault, Origin: "unset"}
		}
		out = append(out, v)
	}
	return out
}

// Duration returns a duration setting (validated by Load), or def when unset.
func (c *Config) Duration(name string, def time.Duration) time.Duration {
	if v := c.Get(name); v != "" {
		d, _ := time.ParseDuration(v)
		return d
	}
	return def
}

// Int64 returns an integer setting (validated by Load), or def when unset.
func (c *Config) Int64(name string, def int64) int64 {
	if v := c.Get(name); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return def
}

// Configured reports whether the agent has what it needs to enroll: a
// server and an enrollment secret. It says which is missing otherwise.
func (c *Config) Configured() (bool, string) {
	var missing []string
	for _, name := range []string{Server, EnrollSecret} {
		if c.Get(name) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return true, ""
	}
	return false, strings.Join(missing, " and ") + " not set"
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileBytes)
	}
	return b, nil
}

// ParseFile parses agent.yaml: a flat mapping of known settings to scalar
// values. An empty or comment-only file is valid; an unknown key is an
// error (a misspelt setting must not be silently ignored).
func ParseFile(b []byte) (map[string]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	out := map[string]string{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return out, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return out, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of settings (key: value)", root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		kn, vn := root.Content[i], root.Content[i+1]
		if _, ok := Lookup(kn.Value); !ok {
			return nil, fmt.Errorf("line %d: unknown setting %q (known: %s)", kn.Line, kn.Value, strings.Join(names(), ", "))
		}
		if _, dup := out[kn.Value]; dup {
			return nil, fmt.Errorf("line %d: %q set twice", kn.Line, kn.Value)
		}
		if vn.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: %s: want a single value", vn.Line, kn.Value)
		}
		if vn.Tag == "!!null" {
			continue
		}
		out[kn.Value] = vn.Value
	}
	return out, nil
}

func names() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Name
	}
	return out
}

func checkServer(v string) error {
	_, err := serverlist.Parse(v)
	return err
}

func checkSecret(v string) error {
	_, err := enrolltoken.Parse(v)
	return err
}

// checkLoopback accepts a HOST:PORT on a loopback address: the agent's
// metrics describe the device and are for local monitoring only.
func checkLoopback(v string) error {
	host, _, err := net.SplitHostPort(v)
	if err != nil {
		return errors.New("want HOST:PORT, e.g. 127.0.0.1:9465")
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("served on a loopback address only (127.0.0.1, ::1 or localhost)")
	}
	return nil
}

func checkPath(v string) error {
	if strings.ContainsRune(v, 0) {
		return errors.New("contains a NUL byte")
	}
	return nil
}

func checkDuration(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration such as 30s, 15m or 1h")
	}
	if d <= 0 {
		return errors.New("must be positive")
	}
	return nil
}

func checkLogFormat(v string) error {
	if v == "text" || v == "json" {
		return nil
	}
	return errors.New("want text or json")
}

func checkLogLevel(v string) error {
	switch strings.ToLower(v) {
	case "debug", "info", "warn", "error":
		return nil
	}
	return errors.New("want debug, info, warn or error")
}

func checkBytes(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return errors.New("want a positive number of bytes")
	}
	return nil
}

// System is this machine's environment: the process environment, the
// platform's managed settings store and config file, and the given
// built-in defaults.
func System(defaults map[string]string) Environment {
	return Environment{LookupEnv: os.LookupEnv, Managed: SystemManaged(), DefaultFile: platform.DefaultAgentConfigFile(), Defaults: defaults}
}
