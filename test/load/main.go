//go:build linux

// Command load is Evident's load generator: simulated devices against real
// evident-server processes over the real protocol. Each device enrolls
// through the Enrollment RPC with its own P-256 key, holds its own mTLS
// evidence stream and sends a recorded host's collection cycle (replayed
// from the host snapshots of test/e2e) every interval, with up to window
// reports unacknowledged, as the agent does. It prints connected streams,
// enrollment and report rates, ack latency, errors by kind and, for servers
// it started, their RSS and CPU; at the end it checks in the store that
// every acknowledged observation is stored exactly once.
//
//	go run ./test/load -devices 1000 -interval 10s -duration 1m
//
// Large fleets are spread over worker processes (each a copy of this
// program) so no process holds more open files than the machine allows.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
