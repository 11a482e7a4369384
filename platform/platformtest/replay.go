// Package platformtest provides a platform.Host for tests: files come from a
// recorded tree, commands are answered from recorded outputs, and any other
// command is "not installed". Tests never run real commands.
package platformtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
)

// Replay is a host replaying recordings.
type Replay struct {
	*platform.Live
	// Commands maps the argv joined by spaces, or argv[0] alone, to the
	// recorded result.
	Commands map[string]platform.Result
	// OS, when set, is the GOOS the host claims to be.
	OS string
	// WMIResults maps namespace+"|"+query to the rows as JSON (what the
	// query's dst decodes from); RegistryValues maps key+"|"+name to a value.
	WMIResults     map[string]string
	RegistryValues map[string]platform.RegistryValue
}

// WMI implements platform.Host from WMIResults.
func (h Replay) WMI(_ context.Context, namespace, query string, dst any) error {
	rows, ok := h.WMIResults[namespace+"|"+query]
	if !ok {
		if h.WMIResults == nil && h.GOOS() != "windows" {
			return fmt.Errorf("WMI: %w", errors.ErrUnsupported)
		}
		return fmt.Errorf("WMI %s %q: %w", namespace, query, fs.ErrNotExist)
	}
	return json.Unmarshal([]byte(rows), dst)
}

// Registry implements platform.Host from RegistryValues.
func (h Replay) Registry(key, name string) (platform.RegistryValue, error) {
	v, ok := h.RegistryValues[key+"|"+name]
	if !ok {
		if h.RegistryValues == nil && h.GOOS() != "windows" {
			return v, fmt.Errorf("registry: %w", errors.ErrUnsupported)
		}
		return v, fmt.Errorf(`HKLM\%s\%s: %w`, key, name, fs.ErrNotExist)
	}
	return v, nil
}

// GOOS implements platform.Host.
func (h Replay) GOOS() string {
	if h.OS != "" {
		return h.OS
	}
	return h.Live.GOOS()
}

// Run implements platform.Host.
func (h Replay) Run(_ context.Context, argv ...string) (platform.Result, error) {
	if len(argv) == 0 {
		return platform.Result{}, platform.ErrCommandNotFound
	}
	r, ok := h.Commands[strings.Join(argv, " ")]
	if !ok {
		r, ok = h.Commands[argv[0]]
	}
	if !ok {
		return platform.Result{Argv: argv}, platform.ErrCommandNotFound
	}
	r.Argv = argv
	return r, nil
}

// ReadFixture reads testdata/<elem...> of the calling package's directory,
// failing the test when it is missing.
func ReadFixture(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
