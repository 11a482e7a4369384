package service

import (
	"strings"

	"github.com/evident-dev/evident/installers"
)

// systemdTemplate is the packaged unit as a kardianos template: its
// ExecStart runs the installing binary with the configured arguments.
func systemdTemplate() string {
	return strings.Replace(installers.SystemdUnit,
		"ExecStart="+installers.LinuxBinary+" run",
		"ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}", 1)
}

// launchdTemplate is the packaged LaunchDaemon as a kardianos template.
func launchdTemplate() string {
	return strings.Replace(installers.LaunchdPlist,
		"<string>"+installers.DarwinBinary+"</string>",
		"<string>{{Path | html}}</string>", 1)
}
