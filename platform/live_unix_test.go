//go:build unix

package platform_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
)

// fakeCommand installs a /bin/sh script at the host-absolute path p under
// root, so an allow-listed name resolves to it.
func fakeCommand(t *testing.T, root, p, script string, mode os.FileMode) string {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte("#!/bin/sh\n"+script+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	return full
}

func TestLiveRun(t *testing.T) {
	t.Setenv("EVIDENT_TEST_LEAK", "leaked")
	tests := []struct {
		name       string
		script     string
		at         string // host path of the script; /usr/bin/uname when empty
		host       platform.Live
		argv       []string
		wantStdout string
		wantStderr string
		wantLen    int // checked instead of wantStdout when non-zero
		wantErrLen int // checked instead of wantStderr when non-zero
		wantExit   int
		wantTrunc  bool
	}{
		{
			name:   "stdout, stderr and exit code",
			script: "echo out; echo err >&2; exit 3",
			argv:   []string{"uname"}, wantStdout: "out\n", wantStderr: "err\n", wantExit: 3,
		},
		{
			name:   "argv passed without a shell",
			script: `printf '<%s>\n' "$@"`,
			argv:   []string{"uname", "a b", "$HOME", ";", "`id`"}, wantStdout: "<a b>\n<$HOME>\n<;>\n<`id`>\n",
		},
		{
			name:   "minimal C environment",
			script: `echo "LC_ALL=$LC_ALL LANG=$LANG leak=$EVIDENT_TEST_LEAK"`,
			argv:   []string{"uname"}, wantStdout: "LC_ALL=C LANG=C leak=\n",
		},
		{
			name:   "explicit environment",
			script: `echo "LC_ALL=$LC_ALL X=$X"`,
			host:   platform.Live{Env: []string{"X=1"}},
			argv:   []string{"uname"}, wantStdout: "LC_ALL= X=1\n",
		},
		{
			name:   "stdout bounded",
			script: "head -c 100000 /dev/zero",
			host:   platform.Live{OutputLimit: 1000},
			argv:   []string{"uname"}, wantLen: 1000, wantTrunc: true,
		},
		{
			name:   "stderr bounded",
			script: "head -c 100000 /dev/zero >&2; echo ok",
			host:   platform.Live{OutputLimit: 1000},
			argv:   []string{"uname"}, wantStdout: "ok\n", wantErrLen: 1000, wantTrunc: true,
		},
		{
			name:   "output exactly at the bound is not truncated",
			script: "head -c 1000 /dev/zero",
			host:   platform.Live{OutputLimit: 1000},
			argv:   []string{"uname"}, wantLen: 1000,
		},
		{
			name:   "second candidate path",
			script: "echo second",
			at:     "/bin/uname",
			argv:   []string{"uname"}, wantStdout: "second\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			at := tt.at
			if at == "" {
				at = "/usr/bin/uname"
			}
			full := fakeCommand(t, root, at, tt.script, 0o755)
			h := tt.host
			h.Root = root
			res, err := h.Run(context.Background(), tt.argv...)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Path != full {
				t.Errorf("Path = %q, want %q", res.Path, full)
			}
			if strings.Join(res.Argv, "\x00") != strings.Join(tt.argv, "\x00") {
				t.Errorf("Argv = %q, want %q", res.Argv, tt.argv)
			}
			if res.ExitCode != tt.wantExit {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, tt.wantExit)
			}
			if res.Truncated != tt.wantTrunc {
				t.Errorf("Truncated = %v, want %v", res.Truncated, tt.wantTrunc)
			}
			if tt.wantLen != 0 {
				if len(res.Stdout) != tt.wantLen {
					t.Errorf("len(Stdout) = %d, want %d", len(res.Stdout), tt.wantLen)
				}
			} else if string(res.Stdout) != tt.wantStdout {
				t.Errorf("Stdout = %q, want %q", res.Stdout, tt.wantStdout)
			}
			if tt.wantErrLen != 0 {
				if len(res.Stderr) != tt.wantErrLen {
					t.Errorf("len(Stderr) = %d, want %d", len(res.Stderr), tt.wantErrLen)
				}
			} else if string(res.Stderr) != tt.wantStderr {
				t.Errorf("Stderr = %q, want %q", res.Stderr, tt.wantStderr)
			}
		})
	}
}

func TestLiveRunPrefersFirstCandidate(t *testing.T) {
	root := t.TempDir()
	first := fakeCommand(t, root, "/usr/bin/uname", "echo first", 0o755)
	fakeCommand(t, root, "/bin/uname", "echo second", 0o755)
	h := &platform.Live{Root: root}
	p, err := h.Resolve("uname")
	if err != nil || p != first {
		t.Fatalf("Resolve = %q, %v; want %q", p, err, first)
	}
	res, err := h.Run(context.Background(), "uname")
	if err != nil || string(res.Stdout) != "first\n" {
		t.Fatalf("Run = %q, %v", res.Stdout, err)
	}
}

func TestLiveRunNotExecutable(t *testing.T) {
	root := t.TempDir()
	fakeCommand(t, root, "/usr/bin/uname", "echo hi", 0o644)
	res, err := (&platform.Live{Root: root}).Run(context.Background(), "uname")
	if err == nil {
		t.Fatalf("Run of a non-executable file = %+v, want an error", res)
	}
	if errors.Is(err, platform.ErrCommandNotFound) || errors.Is(err, platform.ErrNotAllowed) {
		t.Errorf("err = %v: the command exists and is allowed", err)
	}
}

func TestLiveRunTimeout(t *testing.T) {
	tests := []struct {
		name   string
		script string
	}{
		{name: "command itself sleeps", script: "exec sleep 10"},
		// The child keeps the output pipe open after the shell is killed:
		// the bounded wait must still return.
		{name: "child holds the output open", script: "echo started; sleep 10; echo never"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			fakeCommand(t, root, "/usr/bin/uname", tt.script, 0o755)
			h := &platform.Live{Root: root, Timeout: 200 * time.Millisecond}
			start := time.Now()
			res, err := h.Run(context.Background(), "uname")
			took := time.Since(start)
			if err == nil {
				t.Fatalf("Run = %+v, want a timeout error", res)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
				t.Errorf("err = %v, want a timeout", err)
			}
			// Far below the script's 10s; the margin allows for WaitDelay.
			if took > 5*time.Second {
				t.Errorf("Run returned after %s", took)
			}
			if bytes.Contains(res.Stdout, []byte("never")) {
				t.Errorf("Stdout = %q", res.Stdout)
			}
		})
	}
}

func TestLiveRunCancelled(t *testing.T) {
	root := t.TempDir()
	fakeCommand(t, root, "/usr/bin/uname", "exec sleep 10", 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&platform.Live{Root: root}).Run(ctx, "uname")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
