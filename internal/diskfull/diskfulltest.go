package diskfull

import (
	"os"
	"testing"
)

// MountForTest mounts a tmpfs of size bytes on a new temporary directory,
// unmounted when the test ends. Without the privilege to mount it fails the
// test under CI=true and skips it otherwise.
func MountForTest(tb testing.TB, size int64) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "diskfull-")
	if err != nil {
		tb.Fatal(err)
	}
	if err := Mount(dir, size); err != nil {
		os.Remove(dir)
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%v (the disk-full tests need root on Linux)", err)
		}
		tb.Skipf("%v (the disk-full tests need root on Linux)", err)
	}
	tb.Cleanup(func() {
		if err := Unmount(dir); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	return dir
}
