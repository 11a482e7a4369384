package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/evident-dev/evident/platform"
)

// Recorder is a platform.Host that passes every call to an inner host and
// remembers what it answered. It is safe for concurrent use.
type Recorder struct {
	inner platform.Host

	mu       sync.Mutex
	files    map[string][]byte // content read (bounded by what the caller asked)
	fileErrs map[string]File
	dirs     map[string]Dir
	globs    map[string][]string
	cmds     []recordedCmd
	wmi      []recordedWMI
	reg      map[string]RegValue
	stats    map[string]Stat // made on first use (stat.go)
}

type recordedCmd struct {
	cmd            Command
	stdout, stderr []byte
}

type recordedWMI struct {
	q    WMIQuery
	rows []byte
}

// NewRecorder records what is read through inner.
func NewRecorder(inner platform.Host) *Recorder {
	return &Recorder{inner: inner, files: map[string][]byte{}, fileErrs: map[string]File{},
		dirs: map[string]Dir{}, globs: map[string][]string{}, reg: map[string]RegValue{}}
}

// GOOS implements platform.Host.
func (r *Recorder) GOOS() string { return r.inner.GOOS() }

// ReadFile implements platform.Host.
func (r *Recorder) ReadFile(p string, limit int64) ([]byte, error) {
	b, err := r.inner.ReadFile(p, limit)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case isDenied(p):
		r.fileErrs[p] = File{Path: p, Withheld: true}
	case err == nil || errors.Is(err, platform.ErrTruncated):
		// A truncated read keeps its first bytes: replaying them gives the
		// reader the same bytes.
		if old, ok := r.files[p]; !ok || len(b) > len(old) {
			r.files[p] = append([]byte(nil), b...)
		}
	case platform.IsNotExist(err):
		r.fileErrs[p] = File{Path: p, Missing: true}
	default:
		r.fileErrs[p] = File{Path: p, Error: err.Error()}
	}
	return b, err
}

// Glob implements platform.Host.
func (r *Recorder) Glob(pattern string) ([]string, error) {
	m, err := r.inner.Glob(pattern)
	if err == nil {
		r.mu.Lock()
		r.globs[pattern] = append([]string{}, m...)
		r.mu.Unlock()
	}
	return m, err
}

// ReadDir implements platform.Host.
func (r *Recorder) ReadDir(p string) ([]fs.DirEntry, error) {
	ents, err := r.inner.ReadDir(p)
	d := Dir{Path: p, Entries: []Entry{}}
	if err != nil {
		if !platform.IsNotExist(err) {
			return ents, err
		}
		d.Missing = true
	}
	for _, e := range ents {
		d.Entries = append(d.Entries, Entry{Name: e.Name(), Dir: e.IsDir()})
	}
	r.mu.Lock()
	r.dirs[p] = d
	r.mu.Unlock()
	return ents, err
}

// Run implements platform.Host.
func (r *Recorder) Run(ctx context.Context, argv ...string) (platform.Result, error) {
	res, err := r.inner.Run(ctx, argv...)
	c := recordedCmd{cmd: Command{Argv: append([]string(nil), argv...), ExitCode: res.ExitCode, Truncated: res.Truncated},
		stdout: res.Stdout, stderr: res.Stderr}
	switch {
	case errors.Is(err, platform.ErrCommandNotFound):
		c.cmd.NotFound = true
	case err != nil:
		c.cmd.Error = err.Error()
	}
	r.mu.Lock()
	r.cmds = append(r.cmds, c)
	r.mu.Unlock()
	return res, err
}

// WMI implements platform.Host.
func (r *Recorder) WMI(ctx context.Context, namespace, query string, dst any) error {
	err := r.inner.WMI(ctx, namespace, query, dst)
	q := recordedWMI{q: WMIQuery{Namespace: namespace, Query: query}}
	switch {
	case err == nil:
		rows, merr := json.Marshal(reflect.ValueOf(dst).Elem().Interface())
		if merr != nil {
			q.q.Error = merr.Error()
		}
		q.rows = rows
	case platform.IsNotExist(err):
		q.q.Missing = true
	case errors.Is(err, errors.ErrUnsupported):
		return err // not a Windows host: nothing to record
	default:
		q.q.Error = err.Error()
	}
	r.mu.Lock()
	r.wmi = append(r.wmi, q)
	r.mu.Unlock()
	return err
}

// Registry implements platform.Host.
func (r *Recorder) Registry(key, name string) (platform.RegistryValue, error) {
	v, err := r.inner.Registry(key, name)
	rv := RegValue{Key: key, Name: name}
	switch {
	case err == nil:
		rv.Value = &v
	case platform.IsNotExist(err):
		rv.Missing = true
	default:
		return v, err
	}
	r.mu.Lock()
	r.reg[key+"\x00"+name] = rv
	r.mu.Unlock()
	return v, err
}

// Write writes the snapshot into dir, which must not exist or be empty.
func (r *Recorder) Write(dir, hostname, agentVersion string, now time.Time) (Manifest, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return Manifest{}, fmt.Errorf("%s is not empty: choose a new directory for the snapshot", dir)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := Manifest{GOOS: r.inner.GOOS(), GOARCH: runtime.GOARCH, Hostname: hostname, RecordedAt: now.UTC(),
		AgentVersion: agentVersion, Commands: []Command{}, WMI: []WMIQuery{}, Registry: []RegValue{}}
	// A snapshot is a support bundle: only its owner reads it, and
	// credentials in recorded text are masked.
	write := func(rel string, b []byte) error {
		full := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			return err
		}
		b = Redact(b)
		return os.WriteFile(full, b, 0o600)
	}
	for p, b := range r.files {
		if err := write("fs"+path.Clean("/"+p), b); err != nil {
			return m, err
		}
	}
	for _, f := range sortedValues(r.fileErrs) {
		m.Files = append(m.Files, f)
	}
	for _, d := range sortedValues(r.dirs) {
		m.Dirs = append(m.Dirs, d)
	}
	m.Stats = append(m.Stats, sortedValues(r.stats)...)
	for _, p := range sortedKeys(r.globs) {
		m.Globs = append(m.Globs, Glob{Pattern: p, Matches: r.globs[p]})
	}
	// Collectors run concurrently: number commands and queries in a fixed
	// order so the same reads always give the same snapshot.
	slices.SortStableFunc(r.cmds, func(a, b recordedCmd) int {
		return strings.Compare(strings.Join(a.cmd.Argv, "\x00"), strings.Join(b.cmd.Argv, "\x00"))
	})
	slices.SortStableFunc(r.wmi, func(a, b recordedWMI) int {
		return strings.Compare(a.q.Namespace+"\x00"+a.q.Query, b.q.Namespace+"\x00"+b.q.Query)
	})
	seen := map[string]bool{}
	for _, c := range r.cmds {
		k := strings.Join(c.cmd.Argv, "\x00")
		if seen[k] {
			continue // the first answer is the one replayed
		}
		seen[k] = true
		n := len(m.Commands)
		if !c.cmd.NotFound && c.cmd.Error == "" {
			c.cmd.Stdout, c.cmd.Stderr = fmt.Sprintf("commands/%d.out", n), fmt.Sprintf("commands/%d.err", n)
			if err := write(c.cmd.Stdout, c.stdout); err != nil {
				return m, err
			}
			if err := write(c.cmd.Stderr, c.stderr); err != nil {
				return m, err
			}
		}
		m.Commands = append(m.Commands, c.cmd)
	}
	seen = map[string]bool{}
	for _, q := range r.wmi {
		k := q.q.Namespace + "\x00" + q.q.Query
		if seen[k] {
			continue
		}
		seen[k] = true
		if q.rows != nil {
			q.q.Result = fmt.Sprintf("wmi/%d.json", len(m.WMI))
			if err := write(q.q.Result, q.rows); err != nil {
				return m, err
			}
		}
		m.WMI = append(m.WMI, q.q)
	}
	for _, v := range sortedValues(r.reg) {
		m.Registry = append(m.Registry, v)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, err
	}
	return m, write(ManifestName, append(b, '\n'))
}
