package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/platform"
)

// maxManifestBytes bounds manifest.json: a snapshot may come from anyone.
const maxManifestBytes = 16 << 20

// Host replays a snapshot directory as a platform.Host.
type Host struct {
	dir      string
	m        Manifest
	fsDir    string // DIR/fs: files as read, opened through os.Root so links cannot leave it
	fileErrs map[string]File
	dirs     map[string]Dir
	globs    map[string][]string
	cmds     map[string]Command
	wmi      map[string]WMIQuery
	reg      map[string]RegValue
	opened   time.Time // wall clock at Open: Now runs forward from RecordedAt
}

var _ platform.Host = (*Host)(nil)

// Open reads and checks a snapshot directory.
func Open(dir string) (*Host, error) {
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("snapshot %s: manifest larger than %d bytes", dir, maxManifestBytes)
	}
	return parse(dir, b)
}

func parse(dir string, manifest []byte) (*Host, error) {
	var m Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("snapshot %s: manifest: %w", dir, err)
	}
	if m.GOOS == "" {
		return nil, fmt.Errorf("snapshot %s: manifest names no goos", dir)
	}
	// os.Root keeps reads inside fs/, but not when fs/ itself is a link:
	// a snapshot's fs/ must be its own directory.
	if fi, err := os.Lstat(filepath.Join(dir, "fs")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("snapshot %s: fs is a symbolic link; a snapshot's files must be inside it", dir)
	}
	h := &Host{dir: dir, m: m, fsDir: filepath.Join(dir, "fs"),
		fileErrs: map[string]File{}, dirs: map[string]Dir{}, globs: map[string][]string{},
		cmds: map[string]Command{}, wmi: map[string]WMIQuery{}, reg: map[string]RegValue{}, opened: time.Now()}
	for _, f := range m.Files {
		h.fileErrs[path.Clean("/"+f.Path)] = f
	}
	for _, d := range m.Dirs {
		h.dirs[path.Clean("/"+d.Path)] = d
	}
	for _, g := range m.Globs {
		h.globs[g.Pattern] = g.Matches
	}
	for i, c := range m.Commands {
		if len(c.Argv) == 0 {
			return nil, fmt.Errorf("snapshot %s: command %d has no argv", dir, i)
		}
		for _, p := range []string{c.Stdout, c.Stderr} {
			if err := inside(p); err != nil {
				return nil, fmt.Errorf("snapshot %s: command %v: %w", dir, c.Argv, err)
			}
		}
		h.cmds[strings.Join(c.Argv, "\x00")] = c
	}
	for _, q := range m.WMI {
		if err := inside(q.Result); err != nil {
			return nil, fmt.Errorf("snapshot %s: WMI %q: %w", dir, q.Query, err)
		}
		h.wmi[q.Namespace+"\x00"+q.Query] = q
	}
	for _, r := range m.Registry {
		h.reg[r.Key+"\x00"+r.Name] = r
	}
	return h, nil
}

// inside checks a path recorded in the manifest stays inside the snapshot.
func inside(p string) error {
	if p == "" {
		return nil
	}
	if filepath.IsAbs(p) || strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) || !filepath.IsLocal(filepath.FromSlash(p)) {
		return fmt.Errorf("path %q leaves the snapshot directory", p)
	}
	return nil
}

// Manifest returns the snapshot's manifest.
func (h *Host) Manifest() Manifest { return h.m }

// Now implements platform.Clock: the recorded instant plus the time elapsed
// since the snapshot was opened, so a replay dates its evidence when the host
// was read, not when the replay runs. A manifest without recorded_at
// replays at the wall clock.
func (h *Host) Now() time.Time {
	if h.m.RecordedAt.IsZero() {
		return clock.Now()
	}
	return h.m.RecordedAt.Add(time.Since(h.opened))
}

// GOOS implements platform.Host: the recorded host's OS.
func (h *Host) GOOS() string { return h.m.GOOS }

// ReadFile implements platform.Host.
func (h *Host) ReadFile(p string, limit int64) ([]byte, error) {
	if f, ok := h.fileErrs[path.Clean("/"+p)]; ok {
		switch {
		case f.Withheld:
			return nil, fmt.Errorf("%s: withheld from the snapshot (may hold secrets)", p)
		case f.Error != "":
			return nil, fmt.Errorf("%s: %s (as recorded)", p, f.Error)
		default:
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
	}
	if limit <= 0 {
		limit = platform.DefaultFileLimit
	}
	root, err := os.OpenRoot(h.fsDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	defer root.Close()
	f, err := root.Open(strings.TrimPrefix(path.Clean("/"+p), "/"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return b[:limit], fmt.Errorf("read %s: %w (%d bytes)", p, platform.ErrTruncated, limit)
	}
	return b, nil
}

// rootFS is the snapshot's fs/ as an fs.FS confined to it.
func (h *Host) rootFS() (fs.FS, func(), error) {
	root, err := os.OpenRoot(h.fsDir)
	if err != nil {
		return nil, func() {}, err
	}
	return root.FS(), func() { root.Close() }, nil
}

// Glob implements platform.Host.
func (h *Host) Glob(pattern string) ([]string, error) {
	if m, ok := h.globs[pattern]; ok {
		return append([]string(nil), m...), nil
	}
	fsys, done, err := h.rootFS()
	if err != nil {
		return nil, nil
	}
	defer done()
	rel, err := fs.Glob(fsys, strings.TrimPrefix(path.Clean("/"+pattern), "/"))
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rel))
	for i, r := range rel {
		out[i] = "/" + r
	}
	return out, nil
}

// ReadDir implements platform.Host.
func (h *Host) ReadDir(p string) ([]fs.DirEntry, error) {
	d, ok := h.dirs[path.Clean("/"+p)]
	if !ok {
		fsys, done, err := h.rootFS()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		defer done()
		return fs.ReadDir(fsys, strings.TrimPrefix(path.Clean("/"+p), "/"))
	}
	if d.Missing {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	out := make([]fs.DirEntry, len(d.Entries))
	for i, e := range d.Entries {
		out[i] = entry{e}
	}
	return out, nil
}

// entry is a recorded directory entry as an fs.DirEntry.
type entry struct{ e Entry }

func (d entry) Name() string { return d.e.Name }
func (d entry) IsDir() bool  { return d.e.Dir }
func (d entry) Type() fs.FileMode {
	if d.e.Dir {
		return fs.ModeDir
	}
	return 0
}
func (d entry) Info() (fs.FileInfo, error) { return nil, errors.New("no file info in a snapshot") }

// Run implements platform.Host from the recorded commands.
func (h *Host) Run(_ context.Context, argv ...string) (platform.Result, error) {
	c, ok := h.cmds[strings.Join(argv, "\x00")]
	res := platform.Result{Argv: argv}
	if len(argv) > 0 {
		res.Path = "snapshot:" + argv[0]
	}
	switch {
	case !ok || c.NotFound:
		return res, fmt.Errorf("%s: %w", strings.Join(argv, " "), platform.ErrCommandNotFound)
	case c.Error != "":
		return res, fmt.Errorf("%s: %s (as recorded)", strings.Join(argv, " "), c.Error)
	}
	var err error
	if res.Stdout, err = h.output(c.Stdout); err != nil {
		return res, err
	}
	if res.Stderr, err = h.output(c.Stderr); err != nil {
		return res, err
	}
	res.ExitCode, res.Truncated = c.ExitCode, c.Truncated
	return res, nil
}

func (h *Host) output(rel string) ([]byte, error) {
	if rel == "" {
		return nil, nil
	}
	root, err := os.OpenRoot(h.dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot lacks %s named in its manifest", rel)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, platform.DefaultOutputLimit))
}

// WMI implements platform.Host from the recorded queries.
func (h *Host) WMI(_ context.Context, namespace, query string, dst any) error {
	q, ok := h.wmi[namespace+"\x00"+query]
	switch {
	case !ok && h.m.GOOS != "windows":
		return fmt.Errorf("WMI: %w", errors.ErrUnsupported)
	case !ok || q.Missing:
		return fmt.Errorf("WMI %s %q: %w", namespace, query, fs.ErrNotExist)
	case q.Error != "":
		return fmt.Errorf("WMI %s %q: %s (as recorded)", namespace, query, q.Error)
	}
	rows, err := h.output(q.Result)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(rows, dst); err != nil {
		return fmt.Errorf("WMI %s %q: recorded rows: %w", namespace, query, err)
	}
	return nil
}

// Registry implements platform.Host from the recorded values.
func (h *Host) Registry(key, name string) (platform.RegistryValue, error) {
	r, ok := h.reg[key+"\x00"+name]
	switch {
	case !ok && h.m.GOOS != "windows":
		return platform.RegistryValue{}, fmt.Errorf("registry: %w", errors.ErrUnsupported)
	case !ok || r.Missing || r.Value == nil:
		return platform.RegistryValue{}, fmt.Errorf(`HKLM\%s\%s: %w`, key, name, fs.ErrNotExist)
	}
	return *r.Value, nil
}
