//go:build linux

package service

import (
	"os"
	"os/exec"

	kservice "github.com/kardianos/service"
)

// Name is the systemd unit's name, as in the packages.
const Name = "evident-agent"

func options() kservice.KeyValue {
	kv := kservice.KeyValue{}
	if t := systemdTemplate(); t != "" {
		kv["SystemdScript"] = t
	}
	return kv
}

func afterInstall(string) error { return nil }

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
