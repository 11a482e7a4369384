// Package platformtest provides a platform.Host for tests: files come from a
// recorded tree, commands are answered from recorded outputs, and any other
// command is "not installed". Tests never run real commands.
package platformtest

import (
	"context"
	"strings"

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
