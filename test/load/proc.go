//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// raiseFileLimit raises this process's soft limit on open files to the
// hard limit (each stream is a file descriptor) and returns it.
func raiseFileLimit() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, fmt.Errorf("raise the open-file limit to %d: %w", r.Max, err)
		}
	}
	return r.Cur, nil
}

// procUsage reads a process's resident set size and user+system CPU time
// from one read of /proc/PID/stat, so both are of the same instant (zero
// when the process is gone). Fields after the command name, from state
// (3): utime is 14, stime 15, rss (pages) 24; clock ticks are 100 Hz.
func procUsage(pid int) (rssKiB int64, cpu time.Duration) {
	f := procStat(pid)
	if f == nil {
		return 0, 0
	}
	return f(24) * int64(os.Getpagesize()) / 1024, time.Duration(f(14)+f(15)) * 10 * time.Millisecond
}

// procTreeCPU is a process's CPU time plus that of the children it has
// waited for (cutime, cstime): a PostgreSQL backend that exited during a
// run, as every pool connection of a stopped server does, is counted in
// the postmaster's.
func procTreeCPU(pid int) time.Duration {
	f := procStat(pid)
	if f == nil {
		return 0
	}
	return time.Duration(f(14)+f(15)+f(16)+f(17)) * 10 * time.Millisecond
}

// procStat returns field n (numbered as in proc(5), from 3) of
// /proc/PID/stat, or nil when the process is gone.
func procStat(pid int) func(n int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return nil
	}
	return func(field int) int64 { n, _ := strconv.ParseInt(f[field-3], 10, 64); return n }
}

// sourceIP is the loopback address device i connects from: 127.a.b.c
// with a, b and c from 1 to 250, so a large fleet against loopback targets
// does not run out of ephemeral ports on one source address.
func sourceIP(i int) net.IP {
	n := i % (250 * 250 * 250)
	return net.IPv4(127, byte(1+n/62500), byte(1+n/250%250), byte(1+n%250))
}

// dialer returns the dial function device i uses for target: from its own
// loopback source address when spread is set and the target is an IPv4
// loopback address, else the default route.
func dialer(i int, target string, spread bool) func(context.Context, string) (net.Conn, error) {
	// TCP keepalive as the agent has it (gRPC's own dialer: on, with the
	// operating system's timers), not Go's default probe every 15 s.
	d := &net.Dialer{Timeout: 20 * time.Second, KeepAlive: -1,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}}
	if host, _, err := net.SplitHostPort(target); err == nil && spread {
		if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.IsLoopback() {
			d.LocalAddr = &net.TCPAddr{IP: sourceIP(i)}
		}
	}
	return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}
