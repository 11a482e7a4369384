//go:build !unix

package platform

import "os/exec"

// killGroupOnCancel keeps exec's default (kill the process) where process
// groups do not exist.
func killGroupOnCancel(*exec.Cmd) {}
