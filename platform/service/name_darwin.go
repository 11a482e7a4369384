//go:build darwin

package service

import (
	"os"

	kservice "github.com/kardianos/service"
)

// Name is the launchd label, as in the pkg's LaunchDaemon.
const Name = "com.evident.agent"

func options(d Definitions) kservice.KeyValue {
	kv := kservice.KeyValue{"KeepAlive": true, "RunAtLoad": true}
	if t := d.LaunchdTemplate(); t != "" {
		kv["LaunchdConfig"] = t
	}
	return kv
}

// afterInstall creates what the LaunchDaemon needs and the pkg's
// postinstall otherwise makes: launchd does not create a missing log
// directory and fails the job instead.
func afterInstall(string) error {
	if err := os.MkdirAll("/Library/Logs/Evident", 0o755); err != nil {
		return err
	}
	return os.MkdirAll("/Library/Application Support/Evident", 0o700)
}

const plistPath = "/Library/LaunchDaemons/" + Name + ".plist"

// definition returns the LaunchDaemon's path, and whether the pkg installed
// it (its receipt exists).
func definition() (string, bool) {
	if _, err := os.Stat(plistPath); err != nil {
		return "", false
	}
	_, err := os.Stat("/var/db/receipts/" + Name + ".bom")
	return plistPath, err == nil
}

func resetFailed(string)     {}
func startedByManager() bool { return os.Getppid() == 1 }
func enable(string) error    { return nil }
