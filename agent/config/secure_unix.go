//go:build !windows

package config

import (
	"errors"
	"os"
)

// SecureDir creates dir readable only by its owner; an existing directory
// keeps its mode (a package or systemd's StateDirectoryMode set it).
func SecureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// secureFile makes path readable and writable by its owner only.
func secureFile(path string) error { return os.Chmod(path, 0o600) }
