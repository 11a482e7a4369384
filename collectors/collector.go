// Package collectors defines what a collector is, the Observation it returns,
// the explicit Registry the agent runs them from and the Watchdog that keeps
// a hung collector from being started again while it is stuck.
//
// A collector reads one signal (disk encryption, patch level, firewall, ...)
// through a platform.Host and returns a typed payload plus the evidence that
// decided it: which source it read, the command or file, its exit code and a
// bounded raw excerpt. The agent never scores; the server does.
package collectors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/proto/evidence"
)

// Status of one collection (the evidence contract's).
type Status = evidence.Status

const (
	StatusOK          = evidence.StatusOK
	StatusError       = evidence.StatusError
	StatusUnsupported = evidence.StatusUnsupported
)

// ErrNotApplicable is returned (wrapped) by a collector whose signal does not
// exist on this host (e.g. no UEFI firmware for Secure Boot). It is a
// sentinel, not a failure: the Observation's status is ok and its payload
// says why.
var ErrNotApplicable = errors.New("not applicable on this host")

// Unsupported is the error of a collector that does not read goos yet.
func Unsupported(name, goos string) error {
	return fmt.Errorf("%s is not collected on %s yet: %w", name, goos, errors.ErrUnsupported)
}

// ByOS is a Collector that reads each OS with its own function, chosen by
// the host's OS (not the build's), so a snapshot of any OS replays anywhere.
// Every collector is a ByOS: none switches on the OS itself.
//
// An OS without a function is read by Other, or is unsupported when Other
// is nil. A reader that needs more than the context and the host (a clock,
// options) is a closure over them, built by the collector's constructor:
//
//	func newCollector(now func() time.Time) collectors.ByOS {
//		return collectors.ByOS{Signal: Name, Version: ParserVersion,
//			Linux: func(ctx context.Context, h platform.Host) (collectors.Result, error) {
//				return collectLinux(ctx, h, now())
//			}}
//	}
type ByOS struct {
	Signal  string // the collector name
	Version int    // parser version
	Linux   func(context.Context, platform.Host) (Result, error)
	Darwin  func(context.Context, platform.Host) (Result, error)
	Windows func(context.Context, platform.Host) (Result, error)
	// Other reads an OS without a function above; nil: unsupported.
	Other func(context.Context, platform.Host) (Result, error)
}

// Name implements Collector.
func (c ByOS) Name() string { return c.Signal }

// ParserVersion implements Versioned.
func (c ByOS) ParserVersion() int { return c.Version }

// Collect implements Collector.
func (c ByOS) Collect(ctx context.Context, host platform.Host) (Result, error) {
	var read func(context.Context, platform.Host) (Result, error)
	switch host.GOOS() {
	case "linux":
		read = c.Linux
	case "darwin":
		read = c.Darwin
	case "windows":
		read = c.Windows
	}
	if read == nil {
		read = c.Other
	}
	if read == nil {
		return Result{}, Unsupported(c.Signal, host.GOOS())
	}
	return read(ctx, host)
}

// Collector reads one signal.
type Collector interface {
	// Name is stable and unique: it keys evidence on the server.
	Name() string
	// Collect reads the signal. A returned error wrapping
	// errors.ErrUnsupported marks the OS as unsupported; any other error
	// marks this collection as failed. Partial results may be returned
	// alongside an error.
	Collect(ctx context.Context, host platform.Host) (Result, error)
}

// Result is what a collector returns.
type Result struct {
	// Payload is the collector's typed result; it is marshalled to JSON.
	Payload any
	// Sources is the evidence the collector read, in order.
	Sources []Source
}

// Source records one read that contributed to a result, so an auditor can see
// why a control passed or failed (the evidence contract's).
type Source = evidence.Source

// MaxExcerpt bounds a Source excerpt so observations stay small.
const MaxExcerpt = 2048

// Excerpt returns b cut to MaxExcerpt bytes on a UTF-8 boundary-safe cut.
func Excerpt(b []byte) string {
	if len(b) <= MaxExcerpt {
		return string(b)
	}
	// Step back over at most 3 continuation bytes to a rune start; binary
	// data is cut where it is.
	cut := MaxExcerpt
	for i := 0; i < 3 && cut > 0 && b[cut]&0xC0 == 0x80; i++ {
		cut--
	}
	return string(b[:cut]) + "\n…[truncated]"
}

// CommandSource builds the Source of a command result.
func CommandSource(r platform.Result, excerpt []byte) Source {
	code := r.ExitCode
	ref := ""
	for i, a := range r.Argv {
		if i > 0 {
			ref += " "
		}
		ref += a
	}
	return Source{Kind: "command", Ref: ref, ExitCode: &code, Excerpt: Excerpt(excerpt)}
}

// FileSource builds the Source of a file read.
func FileSource(path string, excerpt []byte, err error) Source {
	s := Source{Kind: "file", Ref: path, Excerpt: Excerpt(excerpt)}
	if err != nil {
		s.Error = err.Error()
	}
	return s
}

// Observation is one collector's result at one time, before the outbox gives
// it a sequence number (the evidence contract's).
type Observation = evidence.Observation

// Versioned is implemented by collectors whose parser output may change
// shape; the version travels with each observation.
type Versioned interface{ ParserVersion() int }

// Registry is the explicit list of collectors the agent runs.
type Registry struct {
	byName map[string]Collector
}

// NewRegistry returns a registry holding cs. Duplicate names are an error.
func NewRegistry(cs ...Collector) (*Registry, error) {
	r := &Registry{byName: map[string]Collector{}}
	for _, c := range cs {
		if _, dup := r.byName[c.Name()]; dup {
			return nil, fmt.Errorf("collector %q registered twice", c.Name())
		}
		r.byName[c.Name()] = c
	}
	return r, nil
}

// Names lists the registered collectors, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns the named collector.
func (r *Registry) Get(name string) (Collector, bool) { c, ok := r.byName[name]; return c, ok }

// Select returns a registry restricted to names; unknown names are an error.
func (r *Registry) Select(names []string) (*Registry, error) {
	var cs []Collector
	for _, n := range names {
		c, ok := r.byName[n]
		if !ok {
			return nil, fmt.Errorf("unknown collector %q (known: %v)", n, r.Names())
		}
		cs = append(cs, c)
	}
	return NewRegistry(cs...)
}

// Run runs one collector with its own timeout and turns whatever happens,
// including a panic, into an Observation. It never fails the caller.
func Run(ctx context.Context, c Collector, host platform.Host, timeout time.Duration, now func() time.Time) Observation {
	return run(ctx, c, host, timeout, now, nil)
}

// run is Run under w (nil: no watchdog).
func run(ctx context.Context, c Collector, host platform.Host, timeout time.Duration, now func() time.Time, w *Watchdog) (obs Observation) {
	start := now()
	obs = Observation{Collector: c.Name(), CollectedAt: start.UTC()}
	if v, ok := c.(Versioned); ok {
		obs.ParserVersion = v.ParserVersion()
	}
	defer func() {
		if p := recover(); p != nil {
			obs.Status = StatusError
			obs.Error = fmt.Sprintf("collector panicked: %v", p)
		}
		obs.DurationMS = now().Sub(start).Milliseconds()
	}()
	self, busy := w.begin(c.Name(), start, timeout)
	if busy != "" {
		obs.Status, obs.Error = StatusError, busy
		return obs
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := collectWithin(ctx, c, host, func() { w.end(c.Name(), self) }, func() { w.abandon(c.Name(), self) })
	obs.Sources = res.Sources
	if res.Payload != nil {
		b, merr := json.Marshal(res.Payload)
		if merr != nil {
			obs.Status, obs.Error = StatusError, "marshal payload: "+merr.Error()
			return obs
		}
		obs.Payload = b
	}
	switch {
	case err == nil:
		obs.Status = StatusOK
	case errors.Is(err, ErrNotApplicable):
		// Not a failure: the payload says what the host lacks.
		obs.Status = StatusOK
	case errors.Is(err, errors.ErrUnsupported):
		obs.Status = StatusUnsupported
		obs.Error = err.Error()
	default:
		obs.Status = StatusError
		obs.Error = err.Error()
	}
	return obs
}

// collectWithin returns when Collect does or when ctx ends, whichever is
// first: a collector stuck in a read that ignores its context (a hung NFS or
// /sys file) must not hold up the cycle. Its goroutine is abandoned and its
// late result discarded. returned is called when Collect returns (however
// late), abandoned when the caller stops waiting for it.
func collectWithin(ctx context.Context, c Collector, host platform.Host, returned, abandoned func()) (Result, error) {
	type outcome struct {
		res   Result
		err   error
		panic any
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			o.panic = recover()
			returned()
			done <- o
		}()
		o.res, o.err = c.Collect(ctx, host)
	}()
	select {
	case o := <-done:
		if o.panic != nil {
			panic(o.panic) // re-raised in Run's goroutine, where Run recovers it
		}
		return o.res, o.err
	case <-ctx.Done():
		abandoned()
		return Result{}, fmt.Errorf("collector did not finish: %w", ctx.Err())
	}
}

// RunAll runs every collector of r concurrently (each bounded by timeout)
// and returns their observations in name order.
// Each call stands alone: a collector abandoned by an earlier call is
// started again (Watchdog.RunAll does not).
func (r *Registry) RunAll(ctx context.Context, host platform.Host, timeout time.Duration, now func() time.Time) []Observation {
	return r.runAll(ctx, host, timeout, now, nil)
}

func (r *Registry) runAll(ctx context.Context, host platform.Host, timeout time.Duration, now func() time.Time, w *Watchdog) []Observation {
	names := r.Names()
	out := make([]Observation, len(names))
	done := make(chan struct{}, len(names))
	for i, n := range names {
		go func() {
			out[i] = run(ctx, r.byName[n], host, timeout, now, w)
			done <- struct{}{}
		}()
	}
	for range names {
		<-done
	}
	return out
}
