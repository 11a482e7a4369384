//go:build !linux

package diskfull

// Mount is only possible on Linux.
func Mount(dir string, size int64) error { return ErrUnsupported }

// Unmount is only possible on Linux.
func Unmount(dir string) error { return ErrUnsupported }
