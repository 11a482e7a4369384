// Package e2e runs the real evident-server and evident-agent binaries over
// loopback mTLS: crash and restart faults, exactly-once delivery, and the
// security boundaries of enrollment and the evidence stream.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

var agentBin, serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "evident-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin, serverBin = filepath.Join(dir, "evident-agent"), filepath.Join(dir, "evident-server")
	for bin, pkg := range map[string]string{agentBin: "../../agent/cmd/evident-agent", serverBin: "../../server/cmd/evident-server"} {
		// evidenttest: the binaries' clocks follow EVIDENT_TEST_CLOCK_OFFSET
		// (see clockEnv); release builds ignore it.
		out, err := exec.Command("go", "build", "-tags", "evidenttest", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running binary whose output goes to a log file kept for failures.
type proc struct {
	cmd *exec.Cmd
	log string

	waitOnce sync.Once
	done     chan struct{}
	waitErr  error
}

// wait returns a channel closed when the process has exited; waitErr is
// then its exit error. One goroutine waits, however many ask.
func (p *proc) wait() <-chan struct{} {
	p.waitOnce.Do(func() {
		p.done = make(chan struct{})
		go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	})
	return p.done
}

func start(t *testing.T, logName string, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, logName, bin, args...)
}

// startEnv is start with env added to the test's environment.
func startEnv(t *testing.T, env []string, logName string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), logName)
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &proc{cmd: cmd, log: logPath}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s ---\n%s", logName, tail(b, 40))
		}
	})
	return p
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.wait()
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.wait():
		if err := p.waitErr; err != nil {
			t.Errorf("%s did not stop cleanly: %v", filepath.Base(p.cmd.Path), err)
		}
	case <-time.After(15 * time.Second):
		p.kill()
		t.Errorf("%s did not stop within 15s of SIGTERM", filepath.Base(p.cmd.Path))
	}
}

// server is an evident-server process with its data directory.
type server struct {
	dir  string
	addr string
	p    *proc
	// env is the environment of the server's processes (its clock).
	env []string
}

func startServer(t *testing.T, dir, listen string) *server {
	t.Helper()
	return startServerEnv(t, nil, dir, listen)
}

// startServerEnv starts a server with env added to the test's environment;
// its other commands (token) run with env too.
func startServerEnv(t *testing.T, env []string, dir, listen string, extra ...string) *server {
	t.Helper()
	addrFile := filepath.Join(dir, "listen.addr")
	os.Remove(addrFile)
	p := startEnv(t, env, "server.log", serverBin, append([]string{"run", "--data-dir", dir, "--listen", listen, "--log-level", "debug"}, extra...)...)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return &server{dir: dir, addr: string(bytes.TrimSpace(b)), p: p, env: env}
		}
		select {
		case <-p.wait():
			t.Fatalf("server exited before writing %s: %v", addrFile, p.waitErr)
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not write %s", addrFile)
	return nil
}

func run(t *testing.T, env []string, bin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (s *server) token(t *testing.T, extra ...string) string {
	t.Helper()
	out, errOut, err := run(t, s.env, serverBin, append([]string{"secret", "create", "--data-dir", s.dir}, extra...)...)
	if err != nil {
		t.Fatalf("secret create: %v\n%s", err, errOut)
	}
	return strings.TrimSpace(out)
}

// enroll enrolls a new agent data directory. Every agent of a test runs on
// this one machine, so they all present the same machine id.
func enroll(t *testing.T, s *server, agentDir, token string) string {
	t.Helper()
	out, errOut, err := run(t, []string{"EVIDENT_ENROLL_TOKEN=" + token}, agentBin, "enroll", "--data-dir", agentDir, "--server", s.addr)
	if err != nil {
		t.Fatalf("enroll: %v\n%s%s", err, out, errOut)
	}
	f := strings.Fields(out)
	if len(f) < 3 || f[0] != "enrolled" {
		t.Fatalf("enroll printed %q", out)
	}
	return f[2]
}

// counts reads the server's database read-only, as reports do.
func counts(t *testing.T, dir, device string) store.ObservationCounts {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(dir, "evident.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.Counts(context.Background(), device)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			t.Logf("%s: after %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// deviceRecord reads one device from the server's database.
func deviceRecord(t *testing.T, dir, id string) store.Device {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(dir, "evident.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := st.Device(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// clockEnv shifts the clock of a binary (built with -tags evidenttest) by
// offset. Processes given the same offset share one clock.
func clockEnv(offset time.Duration) []string {
	return []string{clock.OffsetEnv + "=" + offset.String()}
}

// drained checks that an agent's outbox is empty with everything acked and
// nothing dropped, and returns how many observations the agent persisted
// (seqs 1..N).
func drained(t *testing.T, agentDir string) uint64 {
	t.Helper()
	ob, err := outbox.Open(agent.OutboxPath(agentDir), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ob.Stats()
	ob.Close()
	if err != nil {
		t.Fatal(err)
	}
	persisted := st.NextSeq - 1
	if st.Depth != 0 || st.LastAcked != persisted || st.Dropped != 0 {
		t.Fatalf("agent outbox of %s: %+v; want empty, all %d acked, nothing dropped", agentDir, st, persisted)
	}
	return persisted
}

// testClock is a clock file (clock.FileEnv) the test moves forward: every
// process started with its env follows it while it runs.
type testClock struct {
	path string
	now  time.Duration
}

func newTestClock(t *testing.T) *testClock {
	t.Helper()
	c := &testClock{path: filepath.Join(t.TempDir(), "clock")}
	c.set(t, 0)
	return c
}

func (c *testClock) env() []string { return []string{clock.FileEnv + "=" + c.path} }

func (c *testClock) set(t *testing.T, d time.Duration) {
	t.Helper()
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		t.Fatal(err)
	}
	c.now = d
	time.Sleep(30 * time.Millisecond) // every process has re-read it (clock.fileEvery)
}
