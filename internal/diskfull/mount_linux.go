//go:build linux

package diskfull

import (
	"fmt"
	"os"
	"syscall"
)

// Mount mounts a tmpfs of size bytes on dir (created 0700 if missing).
func Mount(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return fmt.Errorf("%w: mount tmpfs on %s: %v", ErrUnsupported, dir, err)
	}
	return nil
}

// Unmount detaches the tmpfs at dir; its content is gone.
func Unmount(dir string) error {
	return syscall.Unmount(dir, syscall.MNT_DETACH)
}
