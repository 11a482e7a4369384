//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"
)

type config struct {
	faults   int
	budget   time.Duration
	agents   int
	interval time.Duration
	recover  time.Duration
	seed     uint64
	binDir   string
	keep     bool
	verbose  bool
	serverFS int64
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "chaos: inject faults into a real server and agents on loopback, then check that nothing was lost or stored twice.\nRuns as root on Linux (it mounts tmpfs file systems). Exit status 0 only when every fault recovered,\nnothing was lost or duplicated, every unstored cycle was reported and the bundle verified.\n\nFlags:")
		fs.PrintDefaults()
	}
	var cfg config
	fs.IntVar(&cfg.faults, "faults", 240, "faults to inject")
	fs.DurationVar(&cfg.budget, "max-duration", 15*time.Minute, "stop injecting (and fail) when the run would take longer than this, drain and checks included")
	fs.IntVar(&cfg.agents, "agents", 3, "agents, each on a tmpfs of its own")
	fs.DurationVar(&cfg.interval, "interval", 50*time.Millisecond, "the agents' collection interval")
	fs.DurationVar(&cfg.recover, "recover", 60*time.Second, "how long evidence may take to flow again after a fault")
	fs.Uint64Var(&cfg.seed, "seed", 0, "random seed (0: from the clock; printed, so a run can be repeated)")
	fs.StringVar(&cfg.binDir, "bin", "", "directory with evident-agent and evident-server built with -tags evidenttest (default: build them)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the work directory (logs, databases) after the run")
	fs.BoolVar(&cfg.verbose, "v", false, "print each fault as it is injected")
	serverMiB := fs.Int("server-fs-mib", 512, "size of the server's tmpfs (RAM); a server-disk-full fault fills it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || cfg.faults < 1 || cfg.agents < 1 || cfg.interval <= 0 || cfg.recover <= 0 || cfg.budget <= 0 || *serverMiB < 16 {
		fmt.Fprintln(stderr, "chaos: -faults and -agents must be at least 1, durations positive, -server-fs-mib at least 16, and no arguments")
		return 2
	}
	cfg.serverFS = int64(*serverMiB) << 20
	if cfg.seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := chaos(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "chaos: FAILED:", err)
		return 1
	}
	return 0
}

// drainBudget is what the end of a run (drain, checks, bundle) is allowed.
const drainBudget = 3 * time.Minute

func chaos(ctx context.Context, cfg config, out io.Writer) (err error) {
	began := time.Now()
	root, err := os.MkdirTemp("", "evident-chaos-")
	if err != nil {
		return err
	}
	r := &rig{cfg: cfg, root: root, log: out, ctx: ctx, bit: map[string]int{}}
	defer func() {
		r.tearDown(cfg.keep || err != nil)
		if cfg.keep || err != nil {
			fmt.Fprintf(out, "chaos: logs and data kept in %s\n", root)
			return
		}
		os.RemoveAll(root)
	}()
	if cfg.binDir != "" {
		r.agentBin, r.serverBin = cfg.binDir+"/evident-agent", cfg.binDir+"/evident-server"
	} else if r.agentBin, r.serverBin, err = buildBinaries(root); err != nil {
		return err
	}
	if err := r.setUp(); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	if err := r.waitFlowing(make([]int, cfg.agents), cfg.recover); err != nil {
		return fmt.Errorf("first evidence: %w", err)
	}
	fmt.Fprintf(out, "chaos: seed %d, %d agents collecting every %s, %d faults\n", cfg.seed, cfg.agents, cfg.interval, cfg.faults)
	rnd := rand.New(rand.NewPCG(cfg.seed, cfg.seed>>1|1))
	injectStart := time.Now()
	stats, done, injErr := r.inject(rnd, cfg.faults, began.Add(cfg.budget-drainBudget))
	injectTook := time.Since(injectStart)
	printFaults(out, stats, done, injectTook)
	if injErr != nil {
		return injErr
	}
	if err := r.drain(); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	devices, err := r.check()
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	resent, err := r.resent()
	if err != nil {
		return err
	}
	verified, err := r.verifyBundle()
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	bad := []error{printDevices(out, devices, resent)}
	if resent == 0 && stats["lost-acks"].count > 0 {
		bad = append(bad, errors.New("no observation was resent: the lost-ack path was not taken"))
	}
	for _, kind := range []string{"agent-disk-full", "server-disk-full"} {
		fmt.Fprintf(out, "%s faults that made a write fail: %d of %d\n", kind, r.bit[kind], stats[kind].count)
		if r.bit[kind] != stats[kind].count {
			bad = append(bad, fmt.Errorf("%d %s faults made no write fail", stats[kind].count-r.bit[kind], kind))
		}
	}
	fmt.Fprintf(out, "bundle: %s\n", verified)
	fmt.Fprintf(out, "chaos: %d faults in %s (%s in all), server started %d times\n", done, injectTook.Round(time.Second), time.Since(began).Round(time.Second), r.srvStarts)
	return errors.Join(bad...)
}

func printFaults(out io.Writer, stats map[string]*faultStats, done int, took time.Duration) {
	names := make([]string, 0, len(stats))
	for n := range stats {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\tinjected\tmean recovery\tmax recovery\t")
	for _, n := range names {
		s := stats[n]
		mean := time.Duration(0)
		if s.count > 0 {
			mean = s.total / time.Duration(s.count)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t\n", n, s.count, mean.Round(time.Millisecond), s.maxRecovery.Round(time.Millisecond))
	}
	fmt.Fprintf(tw, "all\t%d\t\t\t\n", done)
	tw.Flush()
}

// printDevices prints the per-device check and returns an error naming
// what failed.
func printDevices(out io.Writer, ds []deviceResult, resent int) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "agent\tpersisted\tstored\tduplicated\tlost\tdropped (gap)\tcycles not stored\treported as gap\t")
	var t deviceResult
	var errs []error
	for _, d := range ds {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", d.agent, d.persisted, d.stored, d.duplicated(), d.lost, d.dropped, d.unrecorded, d.reported)
		t.add(d)
		if d.lost > 0 || d.duplicated() > 0 || d.extra > 0 {
			errs = append(errs, fmt.Errorf("agent %d: %d lost, %d duplicated, %d stored that it never issued", d.agent, d.lost, d.duplicated(), d.extra))
		}
		if d.unrecorded != d.reported {
			errs = append(errs, fmt.Errorf("agent %d: %d cycles not stored, %d reported as a gap", d.agent, d.unrecorded, d.reported))
		}
	}
	fmt.Fprintf(tw, "all\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", t.persisted, t.stored, t.duplicated(), t.lost, t.dropped, t.unrecorded, t.reported)
	tw.Flush()
	fmt.Fprintf(out, "resent and ignored by the server: %d observations (lost acks and reconnects)\n", resent)
	return errors.Join(errs...)
}
