// Package diskfull makes a real full disk for tests and the chaos run: a
// size-bounded tmpfs mounted on a directory, and a ballast file that takes
// every free byte of it until released. Writes there then fail with ENOSPC
// from the kernel, as on a full disk in the field.
package diskfull

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrUnsupported is returned where mounting is not possible (another OS, no
// privilege).
var ErrUnsupported = errors.New("diskfull: cannot mount a tmpfs here")

// Ballast is a file filling its filesystem.
type Ballast struct{ path string }

// Fill writes a ballast file in dir until the filesystem refuses another
// byte (ENOSPC). Any other write error is returned.
func Fill(dir string) (*Ballast, error) {
	f, err := os.CreateTemp(dir, ".ballast-")
	if err != nil {
		return nil, err
	}
	b := &Ballast{path: f.Name()}
	chunk := make([]byte, 1<<20)
	for len(chunk) > 0 {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				f.Close()
				os.Remove(b.path)
				return nil, fmt.Errorf("filling %s: %w", dir, err)
			}
			chunk = chunk[:len(chunk)/2]
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		os.Remove(b.path)
		return nil, err
	}
	return b, nil
}

// Release removes the ballast: the space is free again.
func (b *Ballast) Release() error {
	if err := os.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
