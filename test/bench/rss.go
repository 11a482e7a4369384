//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchAgentRSS runs the real daemon (enrolled against a real server,
// collecting every 2 s, far more often than the 1 h default) and samples
// its resident memory and CPU from /proc.
func benchAgentRSS(dir, bin string, d time.Duration) {
	srvDir, agentDir := filepath.Join(dir, "server"), filepath.Join(dir, "agent")
	srv, addr := startServer(bin, srvDir, "--log-level", "warn")
	defer func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() }()
	tok, err := exec.Command(filepath.Join(bin, "evident-server"), "secret", "create", "--data-dir", srvDir).Output()
	if err != nil {
		fail(err)
	}
	enroll := exec.Command(filepath.Join(bin, "evident-agent"), "enroll", "--data-dir", agentDir, "--server", addr)
	enroll.Env = append(os.Environ(), "EVIDENT_ENROLL_TOKEN="+strings.TrimSpace(string(tok)))
	if out, err := enroll.CombinedOutput(); err != nil {
		fail(fmt.Errorf("enroll: %v: %s", err, out))
	}
	ag := exec.Command(filepath.Join(bin, "evident-agent"), "run", "--data-dir", agentDir, "--interval", "2s", "--log-level", "warn")
	if err := ag.Start(); err != nil {
		fail(err)
	}
	defer func() { _ = ag.Process.Signal(syscall.SIGTERM); _ = ag.Wait() }()
	pid := ag.Process.Pid
	time.Sleep(3 * time.Second) // first cycle and connection
	cpu0, t0 := procCPU(pid), time.Now()
	var rss []int
	for time.Since(t0) < d {
		time.Sleep(time.Second)
		rss = append(rss, procRSSKiB(pid))
	}
	cpu := procCPU(pid) - cpu0
	wall := time.Since(t0)
	maxRSS := 0
	for _, r := range rss {
		maxRSS = max(maxRSS, r)
	}
	fmt.Println("Agent daemon (evident-agent run --interval 2s, enrolled, streaming to a local server)")
	fmt.Printf("  steady RSS %.1f MiB (max %.1f MiB over %s, %d samples)\n", float64(rss[len(rss)-1])/1024, float64(maxRSS)/1024, wall.Round(time.Second), len(rss))
	fmt.Printf("  CPU of the agent process %s over %s = %.2f%% of one core (commands it runs are children, not counted here)\n\n",
		cpu, wall.Round(time.Second), 100*cpu.Seconds()/wall.Seconds())
}

// startServer runs bin/evident-server on a data directory, listening on a
// free loopback port, and returns it with its address once it listens.
// serverDebug is -server-debug-listen.
var serverDebug string

func startServer(bin, dir string, args ...string) (*exec.Cmd, string) {
	if serverDebug != "" {
		args = append(args, "--debug-listen", serverDebug)
	}
	srv := exec.Command(filepath.Join(bin, "evident-server"), append([]string{"run", "--data-dir", dir, "--listen", "127.0.0.1:0"}, args...)...)
	if err := srv.Start(); err != nil {
		fail(fmt.Errorf("start server (run `make build` first): %w", err))
	}
	for range 200 {
		if b, err := os.ReadFile(filepath.Join(dir, "listen.addr")); err == nil && len(b) > 0 {
			return srv, strings.TrimSpace(string(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = srv.Process.Kill()
	fail(fmt.Errorf("server did not start"))
	return nil, ""
}

func procRSSKiB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// procCPU returns utime+stime of a process (clock ticks are 100 Hz on Linux).
func procCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			u, _ := strconv.Atoi(f[11])
			k, _ := strconv.Atoi(f[12])
			return time.Duration(u+k) * 10 * time.Millisecond
		}
	}
	return 0
}

// runtimeFigures are a server's live heap and goroutine stacks in bytes,
// and its goroutines, read from its --debug-listen profiles.
type runtimeFigures struct {
	heapLive, stacks uint64
	goroutines       int
}

// serverRuntime reads them after a forced collection (the heap profile's
// gc=1), so the heap is what is live, not what the collector has yet to
// reclaim.
func serverRuntime(debugAddr string) (runtimeFigures, error) {
	var f runtimeFigures
	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + debugAddr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", path, resp.Status)
		}
		return string(b), err
	}
	heap, err := get("/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return f, err
	}
	// The text profile ends with runtime.MemStats: "# HeapAlloc = N" and
	// "# Stack = INUSE / SYS".
	found := 0
	for _, l := range strings.Split(heap, "\n") {
		if v, ok := strings.CutPrefix(l, "# HeapAlloc = "); ok {
			f.heapLive, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			found++
		} else if v, ok := strings.CutPrefix(l, "# Stack = "); ok {
			inuse, _, _ := strings.Cut(v, " /")
			f.stacks, err = strconv.ParseUint(strings.TrimSpace(inuse), 10, 64)
			found++
		}
		if err != nil {
			return f, fmt.Errorf("heap profile: %w", err)
		}
	}
	if found != 2 {
		return f, fmt.Errorf("heap profile: no HeapAlloc or Stack figure")
	}
	gr, err := get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return f, err
	}
	first, _, _ := strings.Cut(gr, "\n")
	if _, err := fmt.Sscanf(first, "goroutine profile: total %d", &f.goroutines); err != nil {
		return f, fmt.Errorf("goroutine profile: %q: %w", first, err)
	}
	return f, nil
}

// freeLoopbackAddr is a loopback address whose port was free a moment ago.
func freeLoopbackAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return l.Addr().String()
}
