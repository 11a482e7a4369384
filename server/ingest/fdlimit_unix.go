//go:build unix

package ingest

import "syscall"

// fdLimit is the process's open-file limit (0 when unknown or unlimited).
func fdLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur >= 1<<31 {
		return 0
	}
	return int(rl.Cur)
}
