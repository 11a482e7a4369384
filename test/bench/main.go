//go:build linux

// Command bench prints Evident's performance figures on this machine, each
// next to the raw limit it is bounded by, measured in the same run:
//
//   - one full collection cycle: wall time and CPU time (agent + the
//     commands it runs);
//   - the agent daemon's steady RSS and CPU while enrolled and reporting;
//   - outbox appends/s against raw bbolt batch writes (same values, same
//     fsync);
//   - server ingest observations/s on SQLite against raw SQLite inserts;
//   - end-to-end ingest over gRPC/mTLS loopback against a stream that acks
//     without storing;
//   - the read path (fleet overview, device list pages, device page, API) on
//     fleets of 1,000, 10,000 and 100,000 devices against a raw SQLite page.
//
// Run it with `make bench` (it needs bin/ from `make build`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	quick := flag.Bool("quick", false, "smaller workloads (smoke test)")
	bin := flag.String("bin", "bin", "directory holding evident-agent and evident-server")
	only := flag.String("only", "", "run one group only: readpath, streams, report, grpc or timers")
	nStreams := flag.Int("streams", 2000, "idle agent streams to hold open (each is a file descriptor on both sides)")
	idle := flag.Duration("idle", 130*time.Second, "how long the streams stay idle before the server's RSS is read")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.StringVar(&serverDebug, "server-debug-listen", "", "serve the started servers' runtime profiles on this loopback address (evident-server run --debug-listen)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	dir, err := os.MkdirTemp("", "evident-bench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	scale := 1
	if *quick {
		scale = 10
	}
	fmt.Printf("Evident benchmarks (%s, %d CPUs)\n\n", time.Now().UTC().Format(time.RFC3339), numCPU())

	sizes := []int{1000, 10000, 100000}
	if *quick {
		sizes = []int{1000, 10000}
	}
	switch *only {
	case "readpath":
		benchReadPath(filepath.Join(dir, "read"), sizes)
		return
	case "streams":
		benchIdleStreams(dir, *bin, benchCollection(1), *nStreams, *idle)
		return
	case "report":
		benchReportCPU(dir, *bin, benchCollection(1), 20, 100)
		return
	case "grpc":
		benchGRPC(context.Background(), filepath.Join(dir, "grpc"), benchCollection(1), 200/scale)
		return
	case "timers":
		benchTimers([]int{0, 10000, 50000})
		return
	}
	obs := benchCollection(5 / max(1, scale/5))
	benchAgentRSS(filepath.Join(dir, "rss"), *bin, 20*time.Second/time.Duration(scale))
	benchOutbox(filepath.Join(dir, "outbox"), obs, 400/scale)
	benchSQLite(filepath.Join(dir, "sqlite"), obs, 200/scale)
	benchGRPC(context.Background(), filepath.Join(dir, "grpc"), obs, 200/scale)
	benchReportCPU(dir, *bin, obs, 20, 50/scale)
	benchIdleStreams(dir, *bin, obs, *nStreams/scale, *idle/time.Duration(scale))
	benchReadPath(filepath.Join(dir, "read"), sizes)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// cpuTime returns user+system CPU of this process and its waited-for
// children.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}
