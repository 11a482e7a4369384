//go:build linux

package packaging

import (
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// lintErrors runs a package linter on pkg and returns the tags of the
// errors it reports. Both linters exit non-zero when they report an error:
// only their output decides.
func lintErrors(t *testing.T, re *regexp.Regexp, name string, args ...string) (errs []string, out string) {
	t.Helper()
	b, err := exec.Command(name, args...).CombinedOutput()
	out = string(b)
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		errs = append(errs, m[1])
	}
	sort.Strings(errs)
	return errs, out
}

// checkLint fails on every error tag not in justified (each one is
// explained in installers/README.md), and on a justification that no
// longer matches anything.
func checkLint(t *testing.T, linter string, errs []string, out string, justified map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, tag := range errs {
		seen[tag] = true
		if !justified[tag] {
			t.Errorf("%s: new error %s (fix it, or justify it in installers/README.md and here)", linter, tag)
		}
	}
	for tag := range justified {
		if !seen[tag] {
			t.Errorf("%s: %s is justified but no longer reported: drop the justification", linter, tag)
		}
	}
	if t.Failed() {
		t.Logf("%s said:\n%s", linter, out)
	}
}

// TestDebLintian: lintian reports no error on the debs (agent and server)
// but the one installers/README.md justifies (a Go binary built with
// CGO_ENABLED=0 is static by design). It used to report no-copyright-file
// and no-changelog, and warn that the maintainer scripts call systemctl
// instead of deb-systemd-helper and deb-systemd-invoke.
func TestDebLintian(t *testing.T) {
	lintian := needTool(t, "lintian")
	for _, which := range []string{"agent", "server"} {
		t.Run(which, func(t *testing.T) {
			deb := buildPackage(t, which, "deb", "1.2.3")
			errs, out := lintErrors(t, regexp.MustCompile(`(?m)^E: evident-`+which+`: (\S+)`), lintian, "--tag-display-limit", "0", deb)
			checkLint(t, "lintian", errs, out, map[string]bool{"statically-linked-binary": true})
			for _, gone := range []string{"no-copyright-file", "no-changelog", "debian-changelog", "maintainer-script-calls-systemctl", "command-with-path-in-maintainer-script", "no-manual-page"} {
				if strings.Contains(out, gone) {
					t.Errorf("lintian reports %s again:\n%s", gone, out)
				}
			}
		})
	}
}

// TestRPMLint: rpmlint reports no error on the rpms but those
// installers/README.md justifies: the configuration and data directories
// are root-only on purpose (they hold the enrollment secret and the
// device key, or the server's settings), the build is unsigned (signing is
// the release's step), and nfpm records no file classes, from which rpmlint
// would learn that the program is an ELF binary.
func TestRPMLint(t *testing.T) {
	rpmlint := needTool(t, "rpmlint")
	for _, tt := range []struct {
		which     string
		justified map[string]bool
	}{
		{"agent", map[string]bool{"non-standard-dir-perm": true, "non-readable": true, "no-signature": true, "no-binary": true}},
		{"server", map[string]bool{"non-standard-dir-perm": true, "non-readable": true, "no-signature": true, "no-binary": true}},
	} {
		t.Run(tt.which, func(t *testing.T) {
			rpm := buildPackage(t, tt.which, "rpm", "1.2.3")
			errs, out := lintErrors(t, regexp.MustCompile(`(?m)^evident-`+tt.which+`\.\S+: E: (\S+)`), rpmlint, rpm)
			checkLint(t, "rpmlint", errs, out, tt.justified)
			if strings.Contains(out, "no-changelogname-tag") || strings.Contains(out, "not-listed-as-documentation") {
				t.Errorf("rpmlint still finds the changelog or the documentation wanting:\n%s", out)
			}
		})
	}
}
