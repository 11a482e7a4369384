//go:build linux

package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/collectors/all"
	"github.com/evident-dev/evident/platform"
)

func numCPU() int { return runtime.NumCPU() }

// benchCollection runs every collector on this machine n times and returns
// the last cycle's encoded observations, reused as a realistic workload.
func benchCollection(n int) [][]byte {
	reg, err := collectors.NewRegistry(all.Default()...)
	if err != nil {
		fail(err)
	}
	host := platform.NewLive()
	var obs []collectors.Observation
	var walls, cpus []time.Duration
	for range n {
		c0, t0 := cpuTime(), time.Now()
		obs = reg.RunAll(context.Background(), host, time.Minute, time.Now)
		walls, cpus = append(walls, time.Since(t0)), append(cpus, cpuTime()-c0)
	}
	fmt.Println("Collection cycle (all collectors on this machine, in process)")
	fmt.Printf("  cycles %d: wall median %s (min %s, max %s), CPU median %s (agent + commands it ran)\n",
		n, median(walls), minOf(walls), maxOf(walls), median(cpus))
	var bytes int
	out := make([][]byte, 0, len(obs))
	for _, o := range obs {
		b, err := agent.EncodeObservation(o)
		if err != nil {
			fail(err)
		}
		bytes += len(b)
		out = append(out, b)
		fmt.Printf("    %-15s %-6s %5d ms  %6d bytes\n", o.Collector, o.Status, o.DurationMS, len(b))
	}
	fmt.Printf("  one cycle = %d observations, %d bytes encoded\n\n", len(out), bytes)
	return out
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2].Round(time.Millisecond)
}

func minOf(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = min(m, x)
	}
	return m.Round(time.Millisecond)
}

func maxOf(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = max(m, x)
	}
	return m.Round(time.Millisecond)
}
