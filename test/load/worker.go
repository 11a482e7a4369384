//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
)

// workerArg, as the first argument, runs the process as a worker of a
// parent load run: its configuration comes on stdin, its stats go to
// stdout as JSON lines.
const workerArg = "worker"

// workerConfig is what the parent gives a worker.
type workerConfig struct {
	Worker int `json:"worker"`
	// Devices First to First+Count-1 (global indices) are this worker's.
	First   int      `json:"first"`
	Count   int      `json:"count"`
	Targets []string `json:"targets"`
	Secret  string   `json:"secret"`
	// The server is trusted through CAPEM when set, else through the CA
	// pinned by CAPin (the enrollment token's), then the CA bundle the
	// enrollment returns, as the agent does.
	CAPEM             []byte        `json:"ca_pem,omitempty"`
	CAPin             string        `json:"ca_pin,omitempty"`
	Interval          time.Duration `json:"interval"`
	Window            int           `json:"window"`
	StopAt            time.Time     `json:"stop_at"`
	Drain             time.Duration `json:"drain"`
	EnrollConcurrency int           `json:"enroll_concurrency"`
	Spread            bool          `json:"spread"`
	// NoBusy makes the devices old agents: their Hello does not accept
	// Busy, so an overloaded server ends their streams.
	NoBusy bool    `json:"no_busy,omitempty"`
	Cycles []cycle `json:"cycles"`
}

// message is one JSON line from a worker: its cumulative stats, or a
// device's result; the last one has Done set.
type message struct {
	Stats  *stats  `json:"stats,omitempty"`
	Device *result `json:"device,omitempty"`
	Done   bool    `json:"done,omitempty"`
}

// worker runs a share of the devices in one process.
type worker struct {
	cfg    workerConfig
	meter  meter
	stderr io.Writer

	// stop is closed when the run stops: no new cycles, drain what was
	// sent. hard ends at the end of the drain.
	stop     chan struct{}
	stopOnce sync.Once
	hard     context.Context
	slots    chan struct{} // enrollments at once

	fixedCA *x509.CertPool
	caMu    sync.Mutex
	caPools map[string]*x509.CertPool

	logMu  sync.Mutex
	logged map[string]bool
}

var errStopped = errors.New("the run stopped")

// runWorker is a worker process's entry point.
func runWorker(stdin io.Reader, stdout, stderr io.Writer) int {
	var cfg workerConfig
	if err := json.NewDecoder(stdin).Decode(&cfg); err != nil {
		fmt.Fprintln(stderr, "load worker: reading the configuration on stdin:", err)
		return 2
	}
	if err := work(cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "load worker %d: %v\n", cfg.Worker, err)
		return 1
	}
	return 0
}

func work(cfg workerConfig, stdout, stderr io.Writer) error {
	if _, err := raiseFileLimit(); err != nil {
		return err
	}
	templates, err := decodeCycles(cfg.Cycles)
	if err != nil {
		return err
	}
	if len(cfg.Targets) == 0 || cfg.Window < 1 || cfg.Interval <= 0 || cfg.EnrollConcurrency < 1 {
		return errors.New("incomplete configuration")
	}
	// hard is cancelled at the end of the drain, not given a deadline: a
	// stream's context with a deadline sends it to the server (grpc-timeout),
	// which then holds a timer for every stream and ends it with
	// DeadlineExceeded, where an agent's stream has no deadline.
	hard, cancel := context.WithCancel(context.Background())
	defer cancel()
	endHard := time.AfterFunc(time.Until(cfg.StopAt.Add(cfg.Drain)), cancel)
	defer endHard.Stop()
	w := &worker{cfg: cfg, stderr: stderr, stop: make(chan struct{}), hard: hard,
		slots: make(chan struct{}, cfg.EnrollConcurrency), caPools: map[string]*x509.CertPool{}, logged: map[string]bool{}}
	if len(cfg.CAPEM) > 0 {
		w.fixedCA = x509.NewCertPool()
		if !w.fixedCA.AppendCertsFromPEM(cfg.CAPEM) {
			return errors.New("the server CA holds no PEM certificate")
		}
	}
	// Stop on time, or early on SIGTERM/SIGINT (the parent forwards its
	// own): either way the devices drain before they close.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	timer := time.NewTimer(time.Until(cfg.StopAt))
	defer timer.Stop()
	go func() {
		select {
		case <-timer.C:
		case <-sig:
		case <-hard.Done():
		}
		w.stopNow()
	}()

	var outMu sync.Mutex
	enc := json.NewEncoder(stdout)
	emit := func(m message) {
		outMu.Lock()
		defer outMu.Unlock()
		_ = enc.Encode(m)
	}
	snapshot := func() *stats {
		s := w.meter.snapshot()
		s.RSSKiB, s.CPU = procUsage(os.Getpid())
		return &s
	}
	ticks := time.NewTicker(time.Second)
	defer ticks.Stop()
	tickDone := make(chan struct{})
	go func() {
		for {
			select {
			case <-ticks.C:
				emit(message{Stats: snapshot()})
			case <-tickDone:
				return
			}
		}
	}()

	devs := make([]*device, cfg.Count)
	enrolled := make([]bool, cfg.Count)
	var wg sync.WaitGroup
	for k := range devs {
		i := cfg.First + k
		devs[k] = &device{w: w, index: i, target: cfg.Targets[i%len(cfg.Targets)], cycle: templates[i%len(templates)]}
		wg.Add(1)
		go func() {
			defer wg.Done()
			enrolled[k] = devs[k].run()
		}()
	}
	wg.Wait()
	close(tickDone)
	for k, d := range devs {
		if enrolled[k] {
			r := d.result()
			emit(message{Device: &r})
		}
	}
	emit(message{Stats: snapshot(), Done: true})
	return nil
}

func (w *worker) stopNow() { w.stopOnce.Do(func() { close(w.stop) }) }

func (w *worker) stopping() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// enrollSlot runs fn when an enrollment slot is free, unless the run
// stops first.
func (w *worker) enrollSlot(fn func() error) error {
	select {
	case w.slots <- struct{}{}:
		defer func() { <-w.slots }()
		return fn()
	case <-w.stop:
		return errStopped
	}
}

// failed counts an error by kind and prints the first of each kind.
func (w *worker) failed(phase string, err error) {
	k := kind(phase, err)
	w.meter.fail(k)
	w.logMu.Lock()
	first := !w.logged[k]
	w.logged[k] = true
	w.logMu.Unlock()
	if first {
		fmt.Fprintf(w.stderr, "load worker %d: first %q: %v\n", w.cfg.Worker, k, err)
	}
}

// dial makes device i's connection to target (lazily connected, as
// grpc.NewClient does).
func (w *worker) dial(i int, target string, conf *tls.Config) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+target, dialOptions(i, target, conf, w.cfg.Spread)...)
}

// enrollTLS is how a device trusts the server before it is enrolled.
func (w *worker) enrollTLS(target string) *tls.Config {
	if w.fixedCA == nil {
		return pinnedTLS(target, w.cfg.CAPin)
	}
	host, _, _ := net.SplitHostPort(target)
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: w.fixedCA, ServerName: host}
}

// streamCA is the CA a device trusts for its stream: the given one, or
// the bundle its enrollment returned (parsed once per distinct bundle).
func (w *worker) streamCA(bundle []byte) (*x509.CertPool, error) {
	if w.fixedCA != nil {
		return w.fixedCA, nil
	}
	w.caMu.Lock()
	defer w.caMu.Unlock()
	if p, ok := w.caPools[string(bundle)]; ok {
		return p, nil
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(bundle) {
		return nil, errors.New("the enrollment returned a CA bundle without a certificate")
	}
	w.caPools[string(bundle)] = p
	return p, nil
}
