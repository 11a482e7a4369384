//go:build unix && !linux

package platform

import "syscall"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal (macOS, the BSDs): a command still runs in its own process group,
// killed whole on timeout.
func setParentDeathSignal(*syscall.SysProcAttr) {}
