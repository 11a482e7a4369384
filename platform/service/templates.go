package service

import "strings"

// Definitions are the service definition files the packages install. The
// caller supplies them (the agent's main passes the files installers/
// embeds), so `evident-agent install` writes the packaged file with only the
// binary path replaced by the installing binary's. Zero Definitions leave
// kardianos' own templates, which is enough to run as a service.
type Definitions struct {
	// SystemdUnit is the packaged unit; its ExecStart is
	// "ExecStart=<LinuxBinary> run".
	SystemdUnit, LinuxBinary string
	// LaunchdPlist is the packaged LaunchDaemon; its ProgramArguments
	// start with "<string><DarwinBinary></string>".
	LaunchdPlist, DarwinBinary string
}

// Template placeholders for the installing binary and its arguments.
const (
	SystemdExecStart = "ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}"
	LaunchdProgram   = "<string>{{Path | html}}</string>"
)

// SystemdTemplate is the packaged unit as a kardianos template: its
// ExecStart runs the installing binary with the configured arguments.
func (d Definitions) SystemdTemplate() string {
	return strings.Replace(d.SystemdUnit, "ExecStart="+d.LinuxBinary+" run", SystemdExecStart, 1)
}

// LaunchdTemplate is the packaged LaunchDaemon as a kardianos template.
func (d Definitions) LaunchdTemplate() string {
	return strings.Replace(d.LaunchdPlist, "<string>"+d.DarwinBinary+"</string>", LaunchdProgram, 1)
}
