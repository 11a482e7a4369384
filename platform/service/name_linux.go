//go:build linux

package service

import (
	"os"
	"os/exec"

	kservice "github.com/kardianos/service"
)

// Name is the systemd unit's name, as in the packages.
const Name = "evident-agent"

func options(d Definitions) kservice.KeyValue {
	kv := kservice.KeyValue{}
	if t := d.SystemdTemplate(); t != "" {
		kv["SystemdScript"] = t
	}
	return kv
}

func afterInstall(string) error { return nil }

// unitDirs are where systemd finds units: the administrator's (ours, from
// `install`) and the packages'.
var unitDirs = []struct {
	dir      string
	packaged bool
}{{"/etc/systemd/system", false}, {"/usr/lib/systemd/system", true}, {"/lib/systemd/system", true}}

// definition returns the installed unit's path, and whether a package
// installed it.
func definition() (string, bool) {
	for _, d := range unitDirs {
		p := d.dir + "/" + Name + ".service"
		if _, err := os.Stat(p); err == nil {
			return p, d.packaged
		}
	}
	return "", false
}

// resetFailed clears systemd's failed state and start-limit counter.
func resetFailed(platform string) {
	if platform == "linux-systemd" {
		_ = exec.Command("systemctl", "reset-failed", Name+".service").Run()
	}
}

// startedByManager: systemd sets INVOCATION_ID for every service it starts,
// also when ExecStart goes through a wrapper or PID 1 is a container's.
func startedByManager() bool { return os.Getenv("INVOCATION_ID") != "" }

// enable enables a unit a package installed (kardianos' Install enables
// the units it writes itself).
func enable(platform string) error {
	if platform != "linux-systemd" {
		return nil
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return nil
	}
	return exec.Command("systemctl", "enable", Name+".service").Run()
}
