package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/outbox"
)

// TestExactlyOnceAcrossCrashes kills the agent with SIGKILL while reports are
// in flight, partitions the network so sent reports never arrive, and kills
// and restarts the server mid-stream (twice each), then checks that every
// observation the agent persisted is stored on the server exactly once.
func TestExactlyOnceAcrossCrashes(t *testing.T) {
	root := t.TempDir()
	srvDir, agentDir := filepath.Join(root, "server"), filepath.Join(root, "agent")
	srv := startServer(t, srvDir, "127.0.0.1:0")
	addr := srv.addr
	device := enroll(t, srv, agentDir, srv.token(t))
	proxy := newFaultProxy(t, addr)

	// Cheap collectors on a short interval keep reports flowing constantly.
	agentArgs := []string{"run", "--data-dir", agentDir, "--server", proxy.addr(), "--interval", "20ms",
		"--collectors", "osinfo,secureboot,tpm", "--log-level", "debug"}
	stored := func() int { return counts(t, srvDir, device).Total }

	ag := start(t, "agent-1.log", agentBin, agentArgs...)
	waitFor(t, "first observations stored", time.Minute, func() bool { return stored() >= 30 })

	for round := 1; round <= 2; round++ {
		// SIGKILL the agent mid-stream, then bring it back.
		ag.kill()
		before := stored()
		ag = start(t, "agent-restart.log", agentBin, agentArgs...)
		waitFor(t, "delivery after agent SIGKILL", time.Minute, func() bool { return stored() > before+20 })

		// Partition: reports leave the agent but never reach the server.
		swallowedBefore := proxy.swallowed.Load()
		proxy.blackhole.Store(true)
		waitFor(t, "reports swallowed by the partition", time.Minute, func() bool { return proxy.swallowed.Load() > swallowedBefore+1<<10 })
		proxy.cut()
		before = stored()
		waitFor(t, "delivery after the partition", 2*time.Minute, func() bool { return stored() > before+20 })

		// Kill the server mid-stream and restart it on the same address;
		// the agent reconnects (backoff) and resends from its last ack.
		srv.p.kill()
		time.Sleep(300 * time.Millisecond) // the agent keeps collecting into its outbox meanwhile
		srv = startServer(t, srvDir, addr)
		before = stored()
		waitFor(t, "delivery after server restart", 2*time.Minute, func() bool { return stored() > before+20 })
	}
	ag.kill()

	// Deliver whatever is left: --once exits 0 only when everything is acked.
	if out, errOut, err := run(t, nil, agentBin, "run", "--once", "--data-dir", agentDir, "--server", addr,
		"--collectors", "osinfo,secureboot,tpm", "--once-timeout", "2m"); err != nil {
		t.Fatalf("run --once: %v\n%s%s", err, out, errOut)
	}
	srv.p.stop(t)

	ob, err := outbox.Open(agent.OutboxPath(agentDir), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ob.Stats()
	ob.Close()
	if err != nil {
		t.Fatal(err)
	}
	persisted := st.NextSeq - 1
	if st.Depth != 0 || st.LastAcked != persisted || st.Dropped != 0 {
		t.Fatalf("agent outbox after --once: %+v; want empty, all %d acked, nothing dropped", st, persisted)
	}
	c := counts(t, srvDir, device)
	// (device_id, seq) is the primary key, so Total == MaxSeq-MinSeq+1 with
	// MinSeq 1 and MaxSeq N means seqs 1..N are each stored exactly once.
	if c.Total != int(persisted) || c.MinSeq != 1 || c.MaxSeq != persisted {
		t.Fatalf("server stored %d observations (seq %d..%d); agent persisted seqs 1..%d", c.Total, c.MinSeq, c.MaxSeq, persisted)
	}
	t.Logf("%d observations persisted by the agent, each stored exactly once across 2 agent SIGKILLs, 2 partitions (%d bytes swallowed) and 2 server kills",
		persisted, proxy.swallowed.Load())
}
