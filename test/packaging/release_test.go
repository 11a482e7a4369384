//go:build linux

package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// clone makes a clean clone of the repository's committed HEAD.
func clone(t *testing.T) string {
	t.Helper()
	needTool(t, "git")
	dir := filepath.Join(t.TempDir(), "evident")
	run(t, "", "git", "clone", "-q", "--no-hardlinks", repoRoot(t), dir)
	run(t, dir, "git", "config", "user.email", "release@example.invalid")
	run(t, dir, "git", "config", "user.name", "Release Test")
	return dir
}

// TestRelease: `make release` (installers/release.sh) refuses an untagged
// or dirty checkout, and from a tag builds versioned packages, binaries for
// six platforms, the docs, and a SHA256SUMS that sha256sum -c accepts.
func TestRelease(t *testing.T) {
	needTool(t, "sha256sum")
	needTool(t, "zip")
	dir := clone(t)
	script := filepath.Join(dir, "installers", "release.sh")

	refused := func(what, want string, args ...string) {
		t.Helper()
		cmd := exec.Command("sh", append([]string{script}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("%s: %v, want a refusal saying %q:\n%s", what, err, want, out)
		}
	}
	refused("untagged", "HEAD is not a v* tag")
	refused("unknown target", "unknown target", "--allow-untagged", "--targets", "plan9/386")
	run(t, dir, "git", "tag", "-a", "v9.8.7", "-m", "release test")
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	refused("dirty", "uncommitted changes")
	run(t, dir, "git", "checkout", "-q", "README.md")

	// The host's Linux packages and archives, and a Windows zip: every path
	// of the script, without building all six platforms twice over.
	out := t.TempDir()
	run(t, dir, "sh", script, "--out", out, "--targets", "linux/"+runtime.GOARCH+" windows/amd64")
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || len(f[0]) != 64 {
			t.Fatalf("SHA256SUMS line %q", l)
		}
		listed[f[1]] = true
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" && !listed[e.Name()] {
			t.Errorf("%s is not in SHA256SUMS", e.Name())
		}
	}
	for _, want := range []string{
		"evident-agent_9.8.7_" + runtime.GOARCH + ".deb", "evident-server_9.8.7_" + runtime.GOARCH + ".deb",
		"evident-agent-9.8.7-1." + rpmArch(runtime.GOARCH) + ".rpm", "evident-server-9.8.7-1." + rpmArch(runtime.GOARCH) + ".rpm",
		"evident-agent_9.8.7_linux_" + runtime.GOARCH + ".tar.gz", "evident-server_9.8.7_linux_" + runtime.GOARCH + ".tar.gz",
		"evident-agent_9.8.7_windows_amd64.zip", "evident-server_9.8.7_windows_amd64.zip", "docs-9.8.7.tar.gz",
	} {
		if !listed[want] {
			t.Errorf("the release lacks %s", want)
		}
	}
	run(t, out, "sha256sum", "--quiet", "-c", "SHA256SUMS")
	// The binaries say the tag's version.
	x := t.TempDir()
	run(t, "", "tar", "-C", x, "-xzf", filepath.Join(out, "evident-server_9.8.7_linux_"+runtime.GOARCH+".tar.gz"))
	if got := run(t, "", filepath.Join(x, "evident-server_9.8.7_linux_"+runtime.GOARCH, "evident-server"), "--version"); !strings.HasPrefix(got, "evident-server 9.8.7") {
		t.Errorf("--version = %q", got)
	}
	// A tampered download fails the check.
	f := filepath.Join(out, "docs-9.8.7.tar.gz")
	if err := os.WriteFile(f, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "--quiet", "-c", "SHA256SUMS")
	cmd.Dir = out
	if err := cmd.Run(); err == nil {
		t.Error("sha256sum -c accepted a tampered file")
	}
}
