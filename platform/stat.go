package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FileStat is what Stat tells of one path, without following a final
// symbolic link: when the path is a link, Link is its target (as readlink(2)
// returns it) and the rest describes the link itself.
type FileStat struct {
	ModTime time.Time   `json:"mod_time"`
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"mode"`
	// UID is the owner, where the OS has numeric owners (nil on Windows).
	UID  *uint32 `json:"uid,omitempty"`
	Link string  `json:"link,omitempty"`
}

// Stater is implemented by a Host that can tell a file's modification time,
// owner and link target (the live host, the snapshot recorder and replay).
// It is a separate interface, not a Host method, so hosts that cannot
// answer (test fakes) need not pretend to.
type Stater interface {
	Stat(path string) (FileStat, error)
}

// Stat returns the metadata of an absolute path on h (lstat semantics). A
// missing path returns an error matching fs.ErrNotExist; a Host that cannot
// stat, one matching errors.ErrUnsupported.
func Stat(h Host, path string) (FileStat, error) {
	s, ok := h.(Stater)
	if !ok {
		return FileStat{}, fmt.Errorf("stat %s: %w", path, errors.ErrUnsupported)
	}
	return s.Stat(path)
}

// Stat implements Stater.
func (l *Live) Stat(p string) (FileStat, error) {
	if !filepath.IsAbs(p) && !isSlashAbs(p) {
		return FileStat{}, fmt.Errorf("stat %q: path must be absolute", p)
	}
	fi, err := os.Lstat(l.path(p))
	if err != nil {
		return FileStat{}, err
	}
	st := FileStat{ModTime: fi.ModTime().UTC(), Size: fi.Size(), Mode: fi.Mode(), UID: ownerUID(fi)}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if st.Link, err = os.Readlink(l.path(p)); err != nil {
			return st, err
		}
	}
	return st, nil
}
