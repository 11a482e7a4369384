//go:build linux

package platform_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
)

// TestCommandDiesWithTheAgent: a process running a collector's command is
// SIGKILLed; the command (a long sleep here) does not run on.
func TestCommandDiesWithTheAgent(t *testing.T) {
	if root := os.Getenv("EVIDENT_DEATHSIG_HELPER"); root != "" {
		// The "agent": run the command and hang until killed.
		h := &platform.Live{Root: root, Timeout: time.Minute}
		_, _ = h.Run(context.Background(), "uname")
		select {}
	}
	root := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	fakeCommand(t, root, "/usr/bin/uname", "echo $$ > "+pidFile+"; exec sleep 30", 0o755)
	helper := exec.Command(os.Args[0], "-test.run=^TestCommandDiesWithTheAgent$")
	helper.Env = append(os.Environ(), "EVIDENT_DEATHSIG_HELPER="+root)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			helper.Process.Kill()
			t.Fatal("the command never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	helper.Process.Kill()
	helper.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the command (pid %d) still runs 5 s after its parent was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}
