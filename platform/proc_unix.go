//go:build unix

package platform

import (
	"os/exec"
	"syscall"
)

// killGroupOnCancel runs cmd in its own process group and, on timeout, kills
// the whole group, so a command's children (a package manager's helpers)
// do not outlive it.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
