package installers

import (
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform/service"
)

// TestTemplatesFollowThePackages: the definitions `install` writes are the
// packaged files with only the binary path templated. If a packaged file
// changes so the substitution no longer applies, this fails instead of
// `install` silently writing a service that runs /usr/bin/evident-agent.
func TestTemplatesFollowThePackages(t *testing.T) {
	d := service.Definitions{SystemdUnit: SystemdUnit, LinuxBinary: LinuxBinary, LaunchdPlist: LaunchdPlist, DarwinBinary: DarwinBinary}
	for _, tc := range []struct {
		name, packaged, template, placeholder, binary, packagedLine string
	}{
		{"systemd", SystemdUnit, d.SystemdTemplate(), service.SystemdExecStart, LinuxBinary, "ExecStart=" + LinuxBinary + " run"},
		{"launchd", LaunchdPlist, d.LaunchdTemplate(), service.LaunchdProgram, DarwinBinary, "<string>" + DarwinBinary + "</string>"},
	} {
		if strings.Count(tc.template, "{{Path") != 1 || !strings.Contains(tc.template, tc.placeholder) {
			t.Errorf("%s: template lacks the binary placeholder", tc.name)
		}
		if strings.Contains(tc.template, tc.binary) {
			t.Errorf("%s: template still names %s", tc.name, tc.binary)
		}
		if strings.Count(tc.packaged, "{{") != 0 {
			t.Errorf("%s: the packaged file contains template syntax", tc.name)
		}
		if got := strings.Replace(tc.template, tc.placeholder, tc.packagedLine, 1); got != tc.packaged {
			t.Errorf("%s: template differs from the packaged file beyond the binary path", tc.name)
		}
	}
}
