//go:build !unix

package atomicfile

// syncDir is a no-op where directories cannot be fsynced (Windows makes
// MoveFileEx durable itself).
func syncDir(string) error { return nil }
