package installers

import _ "embed"

// SystemdUnit is the packages' systemd unit; `evident-agent install` writes
// the same unit, with ExecStart pointing at the installing binary.
//
//go:embed linux/evident-agent.service
var SystemdUnit string

// LaunchdPlist is the pkg's LaunchDaemon; `evident-agent install` writes the
// same plist, with ProgramArguments pointing at the installing binary.
//
//go:embed darwin/com.evident.agent.plist
var LaunchdPlist string

// Packaged binary paths, as the service definitions name them.
const (
	LinuxBinary  = "/usr/bin/evident-agent"
	DarwinBinary = "/usr/local/bin/evident-agent"
)
