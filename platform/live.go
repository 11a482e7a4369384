package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"time"
)

// Live is the Host of the machine the agent runs on. Root, when set, is
// prefixed to every file path (node_exporter's --path.rootfs), so a recorded
// tree can stand in for / in tests.
type Live struct {
	Root        string
	Timeout     time.Duration // per command; DefaultTimeout when zero
	OutputLimit int64         // per stream; DefaultOutputLimit when zero
	// Env is the environment commands run with. Nil means a fixed minimal
	// environment (LC_ALL=C so outputs are not localized).
	Env []string
}

// NewLive returns the Host of this machine.
func NewLive() *Live { return &Live{} }

// GOOS implements Host.
func (l *Live) GOOS() string { return runtime.GOOS }

func (l *Live) path(p string) string {
	if l.Root == "" {
		return p
	}
	// Clean as if rooted at "/" first: "/.." is "/" on a real host, so a
	// path must not climb out of Root.
	return filepath.Join(l.Root, filepath.FromSlash(path.Clean("/"+filepath.ToSlash(p))))
}

// ReadFile implements Host.
func (l *Live) ReadFile(path string, limit int64) ([]byte, error) {
	if !filepath.IsAbs(path) && !isSlashAbs(path) {
		return nil, fmt.Errorf("read %q: path must be absolute", path)
	}
	if limit <= 0 {
		limit = DefaultFileLimit
	}
	f, err := os.Open(l.path(path))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return b[:limit], fmt.Errorf("read %s: %w (%d bytes)", path, ErrTruncated, limit)
	}
	return b, nil
}

// isSlashAbs accepts "/sys/..." style paths on Windows too, where
// filepath.IsAbs wants a drive letter.
func isSlashAbs(p string) bool { return len(p) > 0 && (p[0] == '/' || p[0] == '\\') }

// Glob implements Host.
func (l *Live) Glob(pattern string) ([]string, error) {
	m, err := filepath.Glob(l.path(pattern))
	if err != nil {
		return nil, err
	}
	if l.Root == "" {
		return m, nil
	}
	out := make([]string, 0, len(m))
	for _, p := range m {
		rel, err := filepath.Rel(l.Root, p)
		if err != nil {
			continue
		}
		out = append(out, "/"+filepath.ToSlash(rel))
	}
	return out, nil
}

// ReadDir implements Host.
func (l *Live) ReadDir(path string) ([]fs.DirEntry, error) { return os.ReadDir(l.path(path)) }

// Resolve returns the absolute path of an allow-listed command on this host.
func (l *Live) Resolve(name string) (string, error) {
	cands, ok := allowed[name]
	if !ok {
		return "", fmt.Errorf("%s: %w", name, ErrNotAllowed)
	}
	for _, c := range cands {
		if st, err := os.Stat(l.path(c)); err == nil && !st.IsDir() {
			return l.path(c), nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrCommandNotFound)
}

// Run implements Host.
func (l *Live) Run(ctx context.Context, argv ...string) (Result, error) {
	if len(argv) == 0 {
		return Result{}, errors.New("run: empty argv")
	}
	path, err := l.Resolve(argv[0])
	if err != nil {
		return Result{Argv: argv}, err
	}
	timeout := l.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	limit := l.OutputLimit
	if limit <= 0 {
		limit = DefaultOutputLimit
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Env = l.Env
	if cmd.Env == nil {
		cmd.Env = []string{"LC_ALL=C", "LANG=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cmd.WaitDelay = 2 * time.Second
	killGroupOnCancel(cmd)
	stdout := &boundedBuffer{limit: limit}
	stderr := &boundedBuffer{limit: limit}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	// The parent-death signal (Linux) belongs to the thread that starts the
	// command: keep it until the command ends, so the Go runtime cannot
	// retire that thread and take the command with it.
	runtime.LockOSThread()
	err = cmd.Run()
	runtime.UnlockOSThread()
	res := Result{
		Argv: argv, Path: path,
		Stdout: stdout.Bytes(), Stderr: stderr.Bytes(),
		Duration:  time.Since(start),
		Truncated: stdout.truncated || stderr.truncated,
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s: timed out after %s: %w", argv[0], timeout, ctx.Err())
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	default:
		return res, fmt.Errorf("%s: %w", argv[0], err)
	}
	return res, nil
}

// boundedBuffer keeps the first limit bytes written and discards the rest,
// so a runaway command cannot exhaust the agent's memory. The buffer is a
// named field, not embedded: an embedded bytes.Buffer would promote
// ReadFrom, which io.Copy (and so os/exec) prefers to Write, bypassing the
// bound.
type boundedBuffer struct {
	buf       bytes.Buffer
	limit     int64
	truncated bool
}

func (b *boundedBuffer) Bytes() []byte { return b.buf.Bytes() }

func (b *boundedBuffer) Write(p []byte) (int, error) {
	room := b.limit - int64(b.buf.Len())
	if room <= 0 {
		b.truncated = b.truncated || len(p) > 0
		return len(p), nil
	}
	if int64(len(p)) > room {
		b.buf.Write(p[:room])
		b.truncated = true
		return len(p), nil
	}
	return b.buf.Write(p)
}
