package service

import "testing"

// TestTemplates: a definition becomes a template by replacing the packaged
// binary path only (installers' tests check the real packaged files).
func TestTemplates(t *testing.T) {
	d := Definitions{
		SystemdUnit: "[Service]\nExecStart=/usr/bin/agent run\nRestart=on-failure\n", LinuxBinary: "/usr/bin/agent",
		LaunchdPlist: "<array>\n<string>/usr/local/bin/agent</string>\n<string>run</string>\n</array>\n", DarwinBinary: "/usr/local/bin/agent",
	}
	if got, want := d.SystemdTemplate(), "[Service]\n"+SystemdExecStart+"\nRestart=on-failure\n"; got != want {
		t.Errorf("systemd template:\n%s\nwant:\n%s", got, want)
	}
	if got, want := d.LaunchdTemplate(), "<array>\n"+LaunchdProgram+"\n<string>run</string>\n</array>\n"; got != want {
		t.Errorf("launchd template:\n%s\nwant:\n%s", got, want)
	}
	// No files (running, not installing): kardianos' own templates apply.
	if (Definitions{}).SystemdTemplate() != "" || (Definitions{}).LaunchdTemplate() != "" {
		t.Error("zero Definitions give a template")
	}
}
