package platform

import (
	"path"
	"strings"
	"testing"
)

// Every candidate of every command is a clean absolute path, and no name is
// one that would give a collector a shell or an interpreter.
func TestAllowListShape(t *testing.T) {
	forbidden := []string{"sh", "bash", "zsh", "dash", "env", "python", "python3", "perl", "osascript", "powershell", "cmd"}
	for name, cands := range allowed {
		if len(cands) == 0 {
			t.Errorf("%s: no candidate paths", name)
		}
		if strings.ContainsAny(name, `/\ `) {
			t.Errorf("%q: a name, not a path", name)
		}
		seen := map[string]bool{}
		for _, c := range cands {
			if !path.IsAbs(c) || path.Clean(c) != c {
				t.Errorf("%s: candidate %q is not a clean absolute path", name, c)
			}
			if path.Base(c) != name {
				t.Errorf("%s: candidate %q runs a different program", name, c)
			}
			if seen[c] {
				t.Errorf("%s: candidate %q listed twice", name, c)
			}
			seen[c] = true
		}
	}
	for _, f := range forbidden {
		if _, ok := allowed[f]; ok {
			t.Errorf("%q is allow-listed", f)
		}
	}
}
