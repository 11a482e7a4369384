//go:build linux

package platform

import "syscall"

// setParentDeathSignal has the kernel kill the command when the agent dies
// (a SIGKILL, an OOM kill): otherwise a collector's command, apt-get -s
// for one, runs on after a killed agent. The signal follows the thread
// that started the command, so Run keeps that thread for the command's
// whole life (runtime.LockOSThread).
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
