package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/evident-dev/evident/platform"
)

// Stat is one platform.Stat answer: a path's metadata (modification time,
// owner, link target), or that it was missing or could not be read.
type Stat struct {
	Path    string             `json:"path"`
	Stat    *platform.FileStat `json:"stat,omitempty"`
	Missing bool               `json:"missing,omitempty"`
	Error   string             `json:"error,omitempty"`
}

var _ platform.Stater = (*Recorder)(nil)
var _ platform.Stater = (*Host)(nil)

// Stat implements platform.Stater. An inner host that cannot stat is
// passed through unrecorded.
func (r *Recorder) Stat(p string) (platform.FileStat, error) {
	st, err := platform.Stat(r.inner, p)
	if errors.Is(err, errors.ErrUnsupported) {
		return st, err
	}
	s := Stat{Path: p}
	switch {
	case err == nil:
		s.Stat = &st
	case platform.IsNotExist(err):
		s.Missing = true
	default:
		s.Error = err.Error()
	}
	r.mu.Lock()
	if r.stats == nil {
		r.stats = map[string]Stat{}
	}
	r.stats[p] = s
	r.mu.Unlock()
	return st, err
}

// Stat implements platform.Stater from the recorded answers. A path the
// snapshot did not stat is "not found": a file under fs/ has the mtime of
// the snapshot's copy, not of the host's file, so it is never used.
func (h *Host) Stat(p string) (platform.FileStat, error) {
	c := path.Clean("/" + p)
	for _, s := range h.m.Stats {
		if path.Clean("/"+s.Path) != c {
			continue
		}
		switch {
		case s.Error != "":
			return platform.FileStat{}, fmt.Errorf("stat %s: %s (as recorded)", p, s.Error)
		case s.Missing || s.Stat == nil:
			return platform.FileStat{}, fmt.Errorf("stat %s: %w", p, fs.ErrNotExist)
		}
		return *s.Stat, nil
	}
	return platform.FileStat{}, fmt.Errorf("stat %s: not recorded in the snapshot: %w", p, fs.ErrNotExist)
}
