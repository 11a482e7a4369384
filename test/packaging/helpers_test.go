// Package packaging tests the installers: it builds the real packages (deb,
// rpm, MSI) with the same scripts `make package` runs and inspects them with
// the real tools (dpkg in a debootstrap root, rpm, msiinfo, osslsigncode,
// systemd-analyze).
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// cleanups run once every test of the package has (shared build output).
var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}

// repoRoot is the module root (this package lives in test/packaging).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// needTool returns the path of a system tool. A missing tool skips the test
// on a developer machine and fails it under CI (CI=true), where .ci/run
// installs it.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing under CI (.ci/run installs it)", name)
	}
	t.Skipf("%s not installed (apt-get install the package that provides it)", name)
	return ""
}

// needRoot skips (fails under CI) when the test cannot act as root.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root under CI")
	}
	t.Skip("needs root")
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// buildAgent builds evident-agent for goos/goarch with CGO_ENABLED=0 into a
// directory shared by the package's tests and returns the binary's path.
func buildAgent(t testing.TB, goos, goarch, version string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := goos + "/" + goarch + "/" + version
	if p, ok := buildCache[key]; ok {
		return p
	}
	dir := filepath.Join(os.TempDir(), "evident-packaging-test", strings.ReplaceAll(key, "/", "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := "evident-agent"
	if goos == "windows" {
		name += ".exe"
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/evident-dev/evident/internal/version.Version="+version,
		"-o", out, "./agent/cmd/evident-agent")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent %s: %v\n%s", key, err, b)
	}
	buildCache[key] = out
	return out
}

// run runs a command and fails the test with its output when it fails.
func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}
