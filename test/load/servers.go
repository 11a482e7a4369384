//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/evident-dev/evident/internal/enrolltoken"
)

// replica is a local evident-server process.
type replica struct {
	cmd    *exec.Cmd
	addr   string
	log    string
	exited chan error
	// What it used before the load began.
	rss0 int64
	cpu0 time.Duration
}

// fleet is the local replicas of one run, sharing one data directory.
type fleet struct {
	bin, dir, store string
	replicas        []*replica
	stopped         bool
	stopErr         error
}

// spawn starts o.spawn replicas on dir, one after another: the first
// creates the CA (and the SQLite store), the others load them. Each
// listens on its own free loopback port.
func spawn(o options, dir string) (*fleet, error) {
	if _, err := exec.LookPath(o.bin); err != nil {
		return nil, fmt.Errorf("-bin %s: %w (run `make build`, or pass -bin)", o.bin, err)
	}
	f := &fleet{bin: o.bin, dir: dir, store: o.store}
	for i := range o.spawn {
		args := []string{"run", "--data-dir", dir, "--listen", "127.0.0.1:0", "--log-level", o.serverLog, "--rescore-interval", o.rescore.String()}
		if o.maxInFlight > 0 {
			args = append(args, "--max-in-flight", strconv.Itoa(o.maxInFlight))
		}
		if o.debugPort > 0 {
			args = append(args, "--debug-listen", fmt.Sprintf("127.0.0.1:%d", o.debugPort+i))
		}
		if o.queueWait > 0 {
			args = append(args, "--queue-wait", o.queueWait.String())
		}
		r, err := f.start(i+1, append(args, f.storeArgs()...))
		if r != nil {
			f.replicas = append(f.replicas, r)
		}
		if err != nil {
			f.stop()
			return nil, err
		}
	}
	return f, nil
}

// storeArgs passes -store through to the server's commands.
func (f *fleet) storeArgs() []string {
	if f.store == "" {
		return nil
	}
	return []string{"--store", f.store}
}

// start runs replica n and waits for the address it writes to
// DATA_DIR/listen.addr.
func (f *fleet) start(n int, args []string) (*replica, error) {
	addrFile := filepath.Join(f.dir, "listen.addr")
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	r := &replica{log: filepath.Join(f.dir, fmt.Sprintf("server-%d.log", n)), exited: make(chan error, 1)}
	logFile, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	r.cmd = exec.Command(f.bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	// Its own process group, so the terminal's ^C reaches only this
	// program, which drains before it stops the servers; and SIGTERM if
	// this program dies first.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", f.bin, err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			r.addr = string(bytes.TrimSpace(b))
			return r, nil
		}
		select {
		case err := <-r.exited:
			r.exited <- err
			return r, fmt.Errorf("evident-server replica %d exited (%v):\n%s", n, err, tail(r.log, 15))
		case <-deadline:
			return r, fmt.Errorf("evident-server replica %d did not listen within 30s:\n%s", n, tail(r.log, 15))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// token creates an enrollment secret for the run with the server's CLI.
func (f *fleet) token() (enrolltoken.Token, error) {
	cmd := exec.Command(f.bin, append([]string{"secret", "create", "--data-dir", f.dir, "--label", "evident-load"}, f.storeArgs()...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return enrolltoken.Token{}, fmt.Errorf("evident-server secret create: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return enrolltoken.Parse(string(out))
}

func (f *fleet) addrs() []string {
	var out []string
	for _, r := range f.replicas {
		out = append(out, r.addr)
	}
	return out
}

// baseline records what each replica uses before the load.
func (f *fleet) baseline() {
	for _, r := range f.replicas {
		r.rss0, r.cpu0 = procUsage(r.cmd.Process.Pid)
	}
}

// usage returns the replicas' summed RSS now, its growth since the
// baseline, and their CPU time since it.
func (f *fleet) usage() (rssKiB, grownKiB int64, cpu time.Duration) {
	for _, r := range f.replicas {
		rss, used := procUsage(r.cmd.Process.Pid)
		rssKiB += rss
		grownKiB += rss - r.rss0
		cpu += used - r.cpu0
	}
	return rssKiB, grownKiB, cpu
}

// running returns an error naming a replica that has exited (none for a
// nil fleet).
func (f *fleet) running() error {
	if f == nil {
		return nil
	}
	for i, r := range f.replicas {
		select {
		case err := <-r.exited:
			r.exited <- err
			return fmt.Errorf("evident-server replica %d (%s) exited during the run (%v):\n%s", i+1, r.addr, err, tail(r.log, 15))
		default:
		}
	}
	return nil
}

// stop ends every replica with SIGTERM (SIGKILL after 15 s) and reports
// the first that did not stop cleanly.
func (f *fleet) stop() error {
	if f.stopped {
		return f.stopErr
	}
	f.stopped = true
	var first error
	for _, r := range f.replicas {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, r := range f.replicas {
		select {
		case err := <-r.exited:
			r.exited <- err
			if err != nil && first == nil {
				first = fmt.Errorf("evident-server replica %d stopped with %v:\n%s", i+1, err, tail(r.log, 15))
			}
		case <-time.After(15 * time.Second):
			_ = r.cmd.Process.Kill()
			if first == nil {
				first = fmt.Errorf("evident-server replica %d did not stop within 15s of SIGTERM", i+1)
			}
		}
	}
	f.stopErr = first
	return first
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
