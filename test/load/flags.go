//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/cli"
)

// Bounds on a run.
const (
	maxDevices = 100_000
	// perProcess is how many devices one worker process holds by default:
	// each is an open file, and a process here may hold 20,000.
	perProcess = 15_000
)

const help = `load: simulated Evident agents against real evident-server processes, over the real protocol.

Each device enrolls through the Enrollment RPC with its own P-256 key, then holds its own mTLS
evidence stream and sends a replayed collection cycle (fresh seqs and collected_at) every
-interval from a jittered start, with up to -window reports unacknowledged, reconnecting with the
agent's backoff when the server refuses or drops it. After -duration it stops sending, waits up to
-drain for every outstanding ack, closes its stream, and the store is checked: each device's
acknowledged observations are stored exactly once.

Targets: -spawn K starts K local evident-server replicas (-bin) on one data directory (one CA,
one store), or -server HOST:PORT[,...] -secret TOKEN drives an existing deployment. Devices go
round-robin over the targets.

  go run ./test/load -devices 1000 -interval 10s -duration 1m
  go run ./test/load -devices 20000 -spawn 2 -interval 5m -duration 10m -json
  go run ./test/load -server 10.0.0.5:8443 -secret evt1.SECRET.PIN -devices 500 -duration 5m

Exit status: 0 when every device enrolled and the exactly-once check passed (or was not asked
for), 1 otherwise, 2 on bad flags.`

// options are a parsed, validated command line.
type options struct {
	devices           int
	interval          time.Duration
	window            int
	duration, drain   time.Duration
	servers           []string
	caFile, secret    string
	spawn             int
	bin, store        string
	dataDir           string
	keep              bool
	maxInFlight       int
	queueWait         time.Duration
	rescore           time.Duration
	serverLog         string
	debugPort         int
	procs             int
	enrollConcurrency int
	snapshots         string
	every             time.Duration
	json              bool
	spread            bool
	noBusy            bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := cli.NewFlagSet("load", stderr, help)
	fs.IntVar(&o.devices, "devices", 100, fmt.Sprintf("simulated devices (at most %d)", maxDevices))
	fs.DurationVar(&o.interval, "interval", 5*time.Minute, "how often each device sends a collection cycle (each device starts at a random point of its first interval)")
	fs.IntVar(&o.window, "window", 4, "reports a device may have unacknowledged, as the agent (1 to 64)")
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "how long devices send, enrollment included (at most 24h)")
	fs.DurationVar(&o.drain, "drain", 2*time.Minute, "after -duration, how long devices may take to get their outstanding acks before they give up\n(an overloaded server refuses resends too: give it time to catch up)")
	servers := fs.String("server", "", "drive an existing deployment: comma-separated HOST:PORT of its servers (instead of -spawn)")
	fs.StringVar(&o.caFile, "ca", "", "with -server: PEM file of the server CA (not needed when -secret is a token, which pins it)")
	fs.StringVar(&o.secret, "secret", "", "with -server: the enrollment `token` printed by \"evident-server secret create\" (evt1.…), or a bare secret with -ca")
	fs.IntVar(&o.spawn, "spawn", 1, "start this many local evident-server replicas on one data directory (without -server)")
	fs.StringVar(&o.bin, "bin", "bin/evident-server", "with -spawn: the `path` of the evident-server binary (make build puts it in bin/)")
	fs.StringVar(&o.store, "store", "", "the servers' store `spec`, passed to \"evident-server run\" (and \"secret create\") as --store (empty: SQLite under the data directory)")
	fs.StringVar(&o.dataDir, "data-dir", "", "with -spawn: the servers' data directory (default: a new temporary one, removed at the end);\nwith -server: the deployment's data directory, read-only, for the exactly-once check")
	fs.BoolVar(&o.keep, "keep", false, "with -spawn: keep the temporary data directory (database and server logs)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 0, "with -spawn: the servers' --max-in-flight (0: the server's default)")
	fs.DurationVar(&o.queueWait, "queue-wait", 0, "with -spawn: the servers' --queue-wait, how long a report may wait before it is refused as overloaded (0: the server's default)")
	fs.DurationVar(&o.rescore, "rescore-interval", 5*time.Minute, "with -spawn: the servers' --rescore-interval")
	fs.IntVar(&o.debugPort, "debug-port", 0, "with -spawn: serve each replica's Go profiles (--debug-listen) on 127.0.0.1:PORT+n, n from 0 (0: off)")
	fs.StringVar(&o.serverLog, "server-log-level", "warn", "with -spawn: the servers' --log-level (their logs go to DATA_DIR/server-N.log)")
	fs.IntVar(&o.procs, "procs", 0, fmt.Sprintf("worker processes sharing the devices (0: one per %d devices)", perProcess))
	fs.IntVar(&o.enrollConcurrency, "enroll-concurrency", 64, "enrollments in progress at once, over all workers")
	fs.StringVar(&o.snapshots, "snapshots", "test/e2e/testdata/snapshots", "a recorded host snapshot, or a directory of them: device i replays snapshot i mod their number")
	fs.DurationVar(&o.every, "every", 5*time.Second, "how often to print progress")
	fs.BoolVar(&o.json, "json", false, "print the final summary as JSON on stdout (progress goes to stderr)")
	fs.BoolVar(&o.noBusy, "no-busy", false, "devices behave as agents older than Busy: an overloaded server ends their streams instead of asking them to pause")
	fs.BoolVar(&o.spread, "spread-sources", true, "connect to loopback targets from addresses spread over 127.0.0.0/8, so ephemeral ports do not run out")
	if err := cli.Parse(fs, args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bad := func(format string, a ...any) (options, error) {
		fmt.Fprintf(stderr, "load: "+format+"\n", a...)
		return o, cli.ErrUsage
	}
	switch {
	case o.devices < 1 || o.devices > maxDevices:
		return bad("-devices must be from 1 to %d", maxDevices)
	case o.interval < 10*time.Millisecond || o.interval > 24*time.Hour:
		return bad("-interval must be from 10ms to 24h")
	case o.window < 1 || o.window > 64:
		return bad("-window must be from 1 to 64")
	case o.duration < time.Second || o.duration > 24*time.Hour:
		return bad("-duration must be from 1s to 24h")
	case o.drain < time.Second || o.drain > time.Hour:
		return bad("-drain must be from 1s to 1h")
	case o.procs < 0 || o.procs > 64 || o.procs > o.devices:
		return bad("-procs must be from 0 (automatic) to 64, and at most -devices")
	case o.enrollConcurrency < 1 || o.enrollConcurrency > 4096:
		return bad("-enroll-concurrency must be from 1 to 4096")
	case o.every < 100*time.Millisecond:
		return bad("-every must be at least 100ms")
	}
	if *servers != "" {
		if set["spawn"] {
			return bad("give -server (an existing deployment) or -spawn (local servers), not both")
		}
		for _, s := range []string{"bin", "keep", "max-in-flight", "queue-wait", "rescore-interval", "server-log-level"} {
			if set[s] {
				return bad("-%s is for servers started with -spawn, not with -server", s)
			}
		}
		o.spawn = 0
		for _, s := range strings.Split(*servers, ",") {
			s = strings.TrimSpace(s)
			if err := checkHostPort(s); err != nil {
				return bad("-server: %v", err)
			}
			o.servers = append(o.servers, s)
		}
		if o.secret == "" {
			return bad("-server needs -secret: the enrollment token from `evident-server secret create` on the deployment")
		}
		if !strings.HasPrefix(o.secret, "evt1.") && o.caFile == "" {
			return bad("-secret is a bare secret: give -ca (the server CA's PEM file), or pass the whole token, which pins the CA")
		}
		return o, nil
	}
	if set["secret"] || set["ca"] {
		return bad("-secret and -ca are for -server; a spawned server's enrollment secret is created for the run")
	}
	if o.spawn < 1 || o.spawn > 32 {
		return bad("-spawn must be from 1 to 32")
	}
	if o.rescore <= 0 {
		return bad("-rescore-interval must be positive")
	}
	if o.maxInFlight < 0 || o.maxInFlight > 4096 {
		return bad("-max-in-flight must be from 0 (the server's default) to 4096")
	}
	if o.debugPort < 0 || o.debugPort > 65535-64 {
		return bad("-debug-port must be from 0 (off) to 65471")
	}
	if o.queueWait < 0 {
		return bad("-queue-wait must not be negative")
	}
	return o, nil
}

func checkHostPort(s string) error {
	if host, port, err := net.SplitHostPort(s); err != nil || host == "" || port == "" {
		return fmt.Errorf("%q: want HOST:PORT", s)
	}
	return nil
}
