//go:build darwin

package service

import kservice "github.com/kardianos/service"

// Name is the launchd label, as in the pkg's LaunchDaemon.
const Name = "com.evident.agent"

func options() kservice.KeyValue {
	kv := kservice.KeyValue{"KeepAlive": true, "RunAtLoad": true}
	if t := launchdTemplate(); t != "" {
		kv["LaunchdConfig"] = t
	}
	return kv
}

func afterInstall(string) error { return nil }
func enable(string) error       { return nil }
