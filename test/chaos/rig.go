//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/statusapi"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/internal/diskfull"
	"github.com/evident-dev/evident/internal/faultproxy"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// Sizes of the file systems: small enough that a ballast fills them at once,
// large enough for a run's evidence. The agent's outbox bound stays below its
// file system so that only the injected faults fill it.
const (
	agentFS        = 16 << 20
	agentOutboxMax = 6 << 20
)

// rig is the server, the fault proxy and the agents of a run.
type rig struct {
	cfg       config
	root      string
	agentBin  string
	serverBin string
	clockFile string
	clockNow  time.Duration
	srvDir    string
	addr      string
	srv       *proc
	srvStarts int
	proxy     *faultproxy.Proxy
	agents    []*agentProc
	mounts    []string
	log       io.Writer
	// bit counts, by kind, the disk-full faults that made a write fail:
	// a fault that changed nothing proves nothing.
	bit map[string]int
	// ctx ends on SIGINT or SIGTERM: the run stops and unmounts.
	ctx context.Context
}

type agentProc struct {
	i      int
	dir    string
	device string
	p      *proc
	starts int
	logs   []string
}

func (r *rig) clockEnv() []string { return []string{clock.FileEnv + "=" + r.clockFile} }

// setClock moves the clock every process follows.
func (r *rig) setClock(d time.Duration) error {
	tmp := r.clockFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, r.clockFile); err != nil {
		return err
	}
	r.clockNow = d
	return nil
}

func (r *rig) mount(dir string, size int64) error {
	if err := diskfull.Mount(dir, size); err != nil {
		return err
	}
	r.mounts = append(r.mounts, dir)
	return nil
}

// setUp mounts the file systems, starts the server and the proxy, and
// enrolls and starts the agents.
func (r *rig) setUp() error {
	r.clockFile = filepath.Join(r.root, "clock")
	if err := r.setClock(0); err != nil {
		return err
	}
	r.srvDir = filepath.Join(r.root, "server")
	if err := r.mount(r.srvDir, r.cfg.serverFS); err != nil {
		return err
	}
	if err := r.startServer("127.0.0.1:0"); err != nil {
		return err
	}
	token, err := runCmd(time.Minute, r.clockEnv(), r.serverBin, "secret", "create", "--data-dir", r.srvDir)
	if err != nil {
		return err
	}
	if r.proxy, err = faultproxy.Listen(r.addr); err != nil {
		return err
	}
	for i := range r.cfg.agents {
		a := &agentProc{i: i, dir: filepath.Join(r.root, fmt.Sprintf("agent-%d", i))}
		if err := r.mount(a.dir, agentFS); err != nil {
			return err
		}
		out, err := runCmd(time.Minute, append(r.clockEnv(), "EVIDENT_ENROLL_TOKEN="+strings.TrimSpace(token)),
			r.agentBin, "enroll", "--data-dir", a.dir, "--server", r.addr, "--tpm", "none", "--machine-id", fmt.Sprintf("chaos-%d", i))
		if err != nil {
			return err
		}
		f := strings.Fields(out)
		if len(f) < 3 || f[0] != "enrolled" {
			return fmt.Errorf("enroll printed %q", out)
		}
		a.device = f[2]
		r.agents = append(r.agents, a)
		if err := r.startAgent(a); err != nil {
			return err
		}
	}
	return nil
}

func (r *rig) startServer(listen string) error {
	addrFile := filepath.Join(r.srvDir, "listen.addr")
	os.Remove(addrFile)
	r.srvStarts++
	p, err := start(r.clockEnv(), filepath.Join(r.root, "server.log"), r.serverBin, "run", "--data-dir", r.srvDir,
		"--listen", listen, "--log-level", "debug", "--quota-observations", "100000000", "--quota-bytes", "1000000000000")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			r.srv, r.addr = p, string(bytes.TrimSpace(b))
			return nil
		}
		if p.exited() {
			return fmt.Errorf("server exited on start %d: %v\n%s", r.srvStarts, p.err, logTail(p.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill()
	return fmt.Errorf("server did not listen within 30 s (start %d)", r.srvStarts)
}

func (r *rig) startAgent(a *agentProc) error {
	a.starts++
	logPath := filepath.Join(r.root, fmt.Sprintf("agent-%d.%d.log", a.i, a.starts))
	p, err := start(append(r.clockEnv(), fmt.Sprintf("EVIDENT_OUTBOX_MAX_BYTES=%d", agentOutboxMax)), logPath, r.agentBin,
		"run", "--data-dir", a.dir, "--server", r.proxy.Addr(), "--interval", r.cfg.interval.String(),
		"--collectors", "osinfo,secureboot,tpm", "--log-level", "debug", "--machine-id", fmt.Sprintf("chaos-%d", a.i))
	if err != nil {
		return err
	}
	a.p = p
	a.logs = append(a.logs, logPath)
	return nil
}

// stored returns how many observations the server holds for each agent,
// read from its database read-only as reports do.
func (r *rig) stored() ([]int, error) {
	st, err := sqlite.Open(filepath.Join(r.srvDir, "evident.db"), true)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	out := make([]int, len(r.agents))
	for i, a := range r.agents {
		c, err := st.Counts(context.Background(), a.device)
		if err != nil {
			return nil, err
		}
		out[i] = c.Total
	}
	return out, nil
}

// waitFlowing waits until every agent has at least one more cycle stored
// than in before; it fails when a process died on its own.
func (r *rig) waitFlowing(before []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var now []int
	for time.Now().Before(deadline) {
		if err := r.ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: %w", context.Cause(r.ctx))
		}
		if r.srv.exited() {
			return fmt.Errorf("the server exited on its own: %v\n%s", r.srv.err, logTail(r.srv.log))
		}
		for _, a := range r.agents {
			if a.p.exited() {
				return fmt.Errorf("agent %d exited on its own: %v\n%s", a.i, a.p.err, logTail(a.p.log))
			}
		}
		var err error
		if now, err = r.stored(); err == nil {
			ok := true
			for i := range now {
				ok = ok && now[i] >= before[i]+3
			}
			if ok {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("evidence did not flow again within %s: stored %v, before the fault %v", timeout, now, before)
}

// tearDown stops what runs and unmounts the file systems, first copying
// their content next to them (DIR.kept) with keep.
func (r *rig) tearDown(keep bool) {
	for _, a := range r.agents {
		if a.p != nil && !a.p.exited() {
			a.p.kill()
		}
	}
	if r.srv != nil && !r.srv.exited() {
		r.srv.kill()
	}
	if r.proxy != nil {
		r.proxy.Close()
	}
	for i := len(r.mounts) - 1; i >= 0; i-- {
		if keep {
			// The mounts vanish with their content: keep a copy.
			kept := r.mounts[i] + ".kept"
			if out, err := exec.Command("cp", "-a", r.mounts[i]+"/.", kept).CombinedOutput(); err != nil {
				fmt.Fprintf(r.log, "chaos: keeping %s: %v %s\n", r.mounts[i], err, out)
			}
		}
		if err := diskfull.Unmount(r.mounts[i]); err != nil {
			fmt.Fprintf(r.log, "chaos: unmount %s: %v\n", r.mounts[i], err)
		}
	}
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(string(b), 15)
}

// unrecorded asks the running agent how many cycles it could not store
// since its last stored one.
func (a *agentProc) unrecorded() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := statusapi.Get(ctx, statusapi.SocketPath(a.dir))
	if err != nil {
		return 0, err
	}
	var st agent.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, err
	}
	return st.UnrecordedCycles, nil
}

// waitUnrecorded waits until the agent counts a cycle it could not store.
func (a *agentProc) waitUnrecorded(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n, err := a.unrecorded(); err == nil && n > 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// waitRecorded waits until the agent says no cycle is waiting to be
// reported as not stored.
func (a *agentProc) waitRecorded(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n, err := a.unrecorded(); err == nil && n == 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("agent %d still holds unrecorded cycles %s after the disk was freed", a.i, timeout)
}
