package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/server/controls"
)

// TestPushedScheduleReachesRunningAgent: a running agent collecting once an
// hour takes the collection interval of the policy the server is restarted
// with as soon as it reconnects, without a restart of its own; a policy
// without a schedule gives it back its own interval.
func TestPushedScheduleReachesRunningAgent(t *testing.T) {
	root := t.TempDir()
	srvDir, agentDir := filepath.Join(root, "server"), filepath.Join(root, "agent")
	srv := startServer(t, srvDir, "127.0.0.1:0")
	addr := srv.addr
	device := enroll(t, srv, agentDir, srv.token(t))
	start(t, "agent.log", agentBin, "run", "--data-dir", agentDir, "--interval", "1h", "--collectors", "osinfo")
	stored := func() int { return counts(t, srvDir, device).Total }
	waitFor(t, "the first collection", time.Minute, func() bool { return stored() >= 1 })
	status := func() agent.Status {
		var st agent.Status
		out, e, err := run(t, nil, agentBin, "status", "--json", "--data-dir", agentDir)
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status: %v\n%s%s", err, out, e)
		}
		return st
	}

	// The policy: the built-in one, with a schedule of one cycle a second.
	var pol map[string]any
	if err := json.Unmarshal(controls.DefaultJSON(), &pol); err != nil {
		t.Fatal(err)
	}
	pol["version"] = 2
	pol["collection"] = map[string]any{"interval": "1s"}
	b, _ := json.Marshal(pol)
	polFile := filepath.Join(root, "policy.json")
	if err := os.WriteFile(polFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	srv.p.stop(t)
	before := stored()
	srv = startServerEnv(t, nil, srvDir, addr, "--policy", polFile)
	waitFor(t, "cycles at the pushed interval", 30*time.Second, func() bool { return stored() >= before+3 })
	if st := status(); st.Interval != "1s" || !st.ScheduleFromServer {
		t.Errorf("agent status after the push: interval %s, from server %v", st.Interval, st.ScheduleFromServer)
	}

	// Back to a policy without a schedule: the agent's own hour again.
	srv.p.stop(t)
	srv = startServer(t, srvDir, addr)
	waitFor(t, "the agent's own interval back", 30*time.Second, func() bool {
		st := status()
		return st.Interval == "1h0m0s" && !st.ScheduleFromServer
	})
	if st := status(); st.Cycles < 4 || time.Since(st.StartedAt) < 2*time.Second {
		t.Errorf("the agent restarted or did not cycle: %+v", st)
	}
}
