// Package platform is the agent's only door to the machine: files, globbing and
// commands run by absolute, allow-listed path with a timeout and an output bound.
//
// Collectors never touch os or os/exec directly. They receive a Host, which is
// either the live machine (NewLive) or, later, a recorded host snapshot that
// replays on any OS. Keeping every read behind this interface is what lets
// parsers be tested on recorded real outputs and lets a snapshot double as a
// support bundle.
package platform

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/evident-dev/evident/internal/clock"
)

// Host is the door to one machine.
type Host interface {
	// GOOS is the operating system of the host being read (not necessarily
	// the one running the agent, when a snapshot is replayed).
	GOOS() string
	// ReadFile reads an absolute path, at most limit bytes (0 means the
	// default bound). A missing file returns an error matching fs.ErrNotExist.
	ReadFile(path string, limit int64) ([]byte, error)
	// Glob returns the absolute paths matching pattern (filepath.Match syntax).
	Glob(pattern string) ([]string, error)
	// ReadDir lists the names in an absolute directory path.
	ReadDir(path string) ([]fs.DirEntry, error)
	// Run runs one allow-listed command without a shell. argv[0] is a
	// command name from the allow-list (e.g. "lsblk"); the Host resolves it
	// to an absolute path. A command that is not installed returns an error
	// matching ErrCommandNotFound. A non-zero exit is not an error: it is
	// reported in Result.ExitCode.
	Run(ctx context.Context, argv ...string) (Result, error)
	// WMI runs a WQL query in a WMI namespace (e.g. `root\CIMV2`) and
	// decodes the rows into dst, a pointer to a slice of structs whose field
	// names are the WMI property names (github.com/yusufpapurcu/wmi
	// conventions). A class or namespace the host lacks returns an error
	// matching fs.ErrNotExist; a host that is not Windows, an error
	// matching errors.ErrUnsupported.
	WMI(ctx context.Context, namespace, query string, dst any) error
	// Registry reads one value under HKEY_LOCAL_MACHINE (key like
	// `SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU`). A missing key
	// or value returns an error matching fs.ErrNotExist; a host that is not
	// Windows, an error matching errors.ErrUnsupported.
	Registry(key, name string) (RegistryValue, error)
}

// RegistryValue is one registry value. Type is the registry type name
// (DWORD, QWORD, SZ, EXPAND_SZ, MULTI_SZ, BINARY); the field that matches it
// is set.
type RegistryValue struct {
	Type    string   `json:"type"`
	Int     uint64   `json:"int,omitempty"`
	String  string   `json:"string,omitempty"`
	Strings []string `json:"strings,omitempty"`
	Binary  []byte   `json:"binary,omitempty"`
}

// Result is what one command printed.
type Result struct {
	Argv     []string      `json:"argv"`
	Path     string        `json:"path"` // absolute path actually run
	Stdout   []byte        `json:"-"`
	Stderr   []byte        `json:"-"`
	ExitCode int           `json:"exit_code"`
	Duration time.Duration `json:"duration"`
	// Truncated is set when the output bound cut stdout or stderr.
	Truncated bool `json:"truncated,omitempty"`
}

var (
	// ErrCommandNotFound means none of the allow-listed paths of a command
	// exist on this host.
	ErrCommandNotFound = errors.New("command not found on this host")
	// ErrNotAllowed means the command is not on the allow-list.
	ErrNotAllowed = errors.New("command not on the allow-list")
	// ErrTruncated means a file is larger than the bound its reader asked
	// for; ReadFile returns the first bytes with it.
	ErrTruncated = errors.New("larger than the read bound")
)

// Default bounds. A collector that needs more asks for it explicitly.
const (
	DefaultFileLimit   = 4 << 20 // 4 MiB
	DefaultOutputLimit = 8 << 20 // 8 MiB per stream
	DefaultTimeout     = 30 * time.Second
)

// IsNotExist reports whether err means "this host has no such file".
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// Clock is implemented by a Host whose "now" is not the wall clock: a
// recorded host snapshot replays at the instant it was recorded, so the age
// of what it shows (a package index, anti-malware definitions) is the age it
// had then, whatever day the replay runs.
type Clock interface {
	Now() time.Time
}

// Now returns the host's current time: the recorded instant (plus the time
// elapsed since the replay began) for a snapshot, the wall clock (clock.Now)
// otherwise.
func Now(h Host) time.Time {
	if c, ok := h.(Clock); ok {
		return c.Now()
	}
	return clock.Now()
}
