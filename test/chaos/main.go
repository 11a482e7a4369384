//go:build linux

// Command chaos is Evident's long fault run: a real evident-server and
// several real evident-agents on loopback, each on a small tmpfs of its own,
// while faults are injected one after another — agent and server SIGKILLs,
// network cuts, partitions and lost acknowledgements through a fault proxy,
// a full disk on the server and on an agent, and clock jumps. After each
// fault it waits until every device's evidence flows again. At the end it
// drains the agents and checks, device by device, that every observation an
// agent persisted is stored exactly once, that every collection cycle an
// agent could not store reached the server as a gap record, and that the
// hash chains of a signed bundle verify.
//
//	make chaos                      # 240 faults, at most 15 minutes
//	go run ./test/chaos -faults 40  # a shorter run
//
// It mounts tmpfs file systems, so it runs as root on Linux. It touches only
// loopback and its own temporary directory, and stops by itself.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
