//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/enrolltoken"
)

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == workerArg {
		return runWorker(stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == scaleArg {
		return runScale(args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if err == nil {
		err = load(o, stdout, stderr)
	}
	if errors.Is(err, errFailed) {
		return 1
	}
	return cli.ExitCode("load", err, stderr)
}

// errFailed is a run that completed but did not pass: its summary says why.
var errFailed = errors.New("the run did not pass")

// target is where devices go and how they are let in.
type target struct {
	addrs  []string
	secret string
	caPEM  []byte
	caPin  string
}

// load is one run: targets, workers, progress, then the checks.
func load(o options, stdout, stderr io.Writer) error {
	limit, err := raiseFileLimit()
	if err != nil {
		return err
	}
	if o.procs, err = plan(o, int(limit)); err != nil {
		return err
	}
	cycles, err := loadCycles(o.snapshots)
	if err != nil {
		return err
	}
	progress := stdout
	if o.json {
		progress = stderr
	}
	tgt, servers, dataDir, cleanup, err := setUp(o)
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Fprintf(progress, "evident load: %d devices over %s, %d worker process(es); every %s from a jittered start, window %d, for %s\n",
		o.devices, describeTargets(o, tgt, dataDir), o.procs, o.interval, o.window, o.duration)
	fmt.Fprintf(progress, "replaying %s\n", describeCycles(cycles))

	sum, results, failures := drive(o, tgt, servers, cycles, progress, stderr)
	if servers != nil {
		failures = append(failures, servers.stop())
	}
	failed := errors.Join(failures...)
	if failed != nil {
		fmt.Fprintln(stderr, "load:", failed)
	}
	switch {
	case failed != nil:
		sum.ExactlyOnce.Message = "exactly-once: not checked: the run failed"
	case dataDir == "" && o.store == "":
		sum.ExactlyOnce.Message = "exactly-once: not checked (give -data-dir or -store of the deployment to check it)"
	default:
		x, err := check(dataDir, o.store, results)
		if err != nil {
			failed = err
			x.Message = "exactly-once: not checked: " + err.Error()
		}
		sum.ExactlyOnce = x
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return err
		}
	} else {
		sum.print(stdout)
	}
	if failed != nil || sum.Enrolled < int64(o.devices) || (sum.ExactlyOnce.Checked && !sum.ExactlyOnce.OK) {
		if o.json {
			fmt.Fprintln(stderr, sum.ExactlyOnce.Message)
		}
		return errFailed
	}
	return nil
}

// check opens the store read-only and runs the exactly-once check.
func check(dataDir, spec string, results []result) (exactlyOnce, error) {
	st, err := openStore(dataDir, spec)
	if err != nil {
		return exactlyOnce{}, err
	}
	defer st.Close()
	return checkExactlyOnce(context.Background(), st, results)
}

// plan returns how many worker processes share the devices, so none
// holds more open files than limit, and checks spawned replicas the same
// way (each holds one file per stream).
func plan(o options, limit int) (int, error) {
	perProc := min(perProcess, limit*3/4)
	procs := o.procs
	if procs == 0 {
		procs = (o.devices + perProc - 1) / perProc
	}
	if share := (o.devices + procs - 1) / procs; share+512 > limit {
		return 0, fmt.Errorf("%d devices per worker process, but a process may open %d files here: use -procs %d or more",
			share, limit, (o.devices+perProc-1)/perProc)
	}
	if o.spawn > 0 {
		if share := (o.devices + o.spawn - 1) / o.spawn; share+512 > limit {
			return 0, fmt.Errorf("%d streams per server replica, but a process may open %d files here: use -spawn %d or more",
				share, limit, (o.devices+limit-513)/(limit-512))
		}
	}
	return procs, nil
}

// setUp starts the replicas of -spawn (with their enrollment secret) or
// reads how to reach -server. cleanup removes a temporary data directory.
func setUp(o options) (tgt target, servers *fleet, dataDir string, cleanup func(), err error) {
	cleanup = func() {}
	if o.spawn == 0 {
		tgt, err = existing(o)
		return tgt, nil, o.dataDir, cleanup, err
	}
	dataDir = o.dataDir
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "evident-load-"); err != nil {
			return tgt, nil, "", cleanup, err
		}
		if !o.keep {
			cleanup = func() { os.RemoveAll(dataDir) }
		}
	} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return tgt, nil, "", cleanup, err
	}
	if servers, err = spawn(o, dataDir); err != nil {
		return tgt, nil, "", cleanup, err
	}
	rm := cleanup
	cleanup = func() { servers.stop(); rm() }
	tok, err := servers.token()
	if err != nil {
		return tgt, nil, "", cleanup, err
	}
	return target{addrs: servers.addrs(), secret: tok.Secret, caPin: tok.CAPin}, servers, dataDir, cleanup, nil
}

// drive runs the workers to the end, printing progress, and returns the
// summary (without the exactly-once check), every enrolled device's
// result, and what went wrong with the workers or the servers.
func drive(o options, tgt target, servers *fleet, cycles []cycle, progress, stderr io.Writer) (summary, []result, []error) {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	if servers != nil {
		servers.baseline()
	}
	start := time.Now()
	agg := &aggregate{latest: make([]stats, o.procs)}
	workers, err := startWorkers(o, tgt, cycles, start.Add(o.duration), agg, stderr)
	if err != nil {
		return summary{}, nil, []error{err}
	}
	smp := &sampler{o: o, agg: agg, servers: servers, start: start, out: progress}
	done := make(chan struct{})
	var failures []error
	go func() { failures = append(failures, waitWorkers(workers, agg)); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastPrint, interrupted, serverDown := start, false, false
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-ctx.Done():
			// Stop early and drain as usual; a second signal ends this
			// program (its workers and servers die with it).
			stopSignals()
			interrupted = true
			fmt.Fprintln(progress, "stopping: devices drain their outstanding reports")
			for _, w := range workers {
				_ = w.cmd.Process.Signal(syscall.SIGTERM)
			}
			ctx = context.Background()
		case now := <-tick.C:
			smp.sample()
			if err := servers.running(); err != nil && !serverDown {
				serverDown = true
				fmt.Fprintln(stderr, "load:", err)
			}
			if now.Sub(lastPrint) >= o.every-time.Second/2 {
				smp.print(now)
				lastPrint = now
			}
		}
	}
	smp.sample()
	sum := smp.summary(time.Since(start), tgt)
	sum.Interrupted = interrupted
	return sum, agg.devices(), failures
}

// existing is the target of -server: its addresses and how to enroll.
func existing(o options) (target, error) {
	t := target{addrs: o.servers, secret: o.secret}
	if strings.HasPrefix(o.secret, "evt1.") {
		tok, err := enrolltoken.Parse(o.secret)
		if err != nil {
			return t, fmt.Errorf("-secret: %w", err)
		}
		t.secret, t.caPin = tok.Secret, tok.CAPin
	}
	if o.caFile != "" {
		b, err := os.ReadFile(o.caFile)
		if err != nil {
			return t, fmt.Errorf("-ca: %w", err)
		}
		t.caPEM = b
	}
	return t, nil
}

// workerProc is a running worker process.
type workerProc struct {
	n      int
	cmd    *exec.Cmd
	stdout io.ReadCloser
	eof    chan struct{} // closed when its stdout is read to the end
	done   bool          // it sent its final stats
}

// startWorkers starts the worker processes, each with its share of the
// devices, and feeds what they print into agg.
func startWorkers(o options, t target, cycles []cycle, stopAt time.Time, agg *aggregate, stderr io.Writer) ([]*workerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	share := (o.devices + o.procs - 1) / o.procs
	var out []*workerProc
	for n := range o.procs {
		first := n * share
		if first >= o.devices {
			break
		}
		cfg := workerConfig{Worker: n, First: first, Count: min(share, o.devices-first), Targets: t.addrs, Secret: t.secret,
			CAPEM: t.caPEM, CAPin: t.caPin, Interval: o.interval, Window: o.window, StopAt: stopAt, Drain: o.drain,
			EnrollConcurrency: max(1, o.enrollConcurrency/o.procs), Spread: o.spread, NoBusy: o.noBusy, Cycles: cycles}
		b, err := json.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		w := &workerProc{n: n, cmd: exec.Command(exe, workerArg), eof: make(chan struct{})}
		w.cmd.Stdin = strings.NewReader(string(b))
		w.cmd.Stderr = stderr
		// Its own process group: ^C reaches this program only, which
		// tells the workers to drain; they die with it.
		w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if w.stdout, err = w.cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		if err := w.cmd.Start(); err != nil {
			for _, started := range out {
				_ = started.cmd.Process.Kill()
			}
			return nil, fmt.Errorf("start worker: %w", err)
		}
		out = append(out, w)
	}
	for _, w := range out {
		go w.read(agg)
	}
	return out, nil
}

// read feeds the worker's JSON lines into agg until it closes stdout.
func (w *workerProc) read(agg *aggregate) {
	defer close(w.eof)
	dec := json.NewDecoder(w.stdout)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			if !errors.Is(err, io.EOF) {
				agg.fail(fmt.Errorf("worker %d printed something other than its JSON lines: %w", w.n, err))
			}
			_, _ = io.Copy(io.Discard, w.stdout)
			return
		}
		agg.update(w, m)
	}
}

// waitWorkers waits for every worker (after reading all it printed) and
// reports the first that failed.
func waitWorkers(ws []*workerProc, agg *aggregate) error {
	var errs []error
	for _, w := range ws {
		<-w.eof
		if err := w.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", w.n, err))
		} else if !agg.finished(w) {
			errs = append(errs, fmt.Errorf("worker %d ended without its final report", w.n))
		}
	}
	if err := agg.failure(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// aggregate is what the workers reported.
type aggregate struct {
	mu      sync.Mutex
	latest  []stats // cumulative, per worker
	results []result
	err     error
}

func (a *aggregate) update(w *workerProc, m message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m.Stats != nil {
		a.latest[w.n] = *m.Stats
	}
	if m.Device != nil {
		a.results = append(a.results, *m.Device)
	}
	if m.Done {
		w.done = true
	}
}

func (a *aggregate) finished(w *workerProc) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return w.done
}

func (a *aggregate) failure() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *aggregate) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = err
	}
}

func (a *aggregate) total() stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	var t stats
	for _, s := range a.latest {
		t.add(s)
	}
	return t
}

func (a *aggregate) devices() []result {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]result(nil), a.results...)
}
