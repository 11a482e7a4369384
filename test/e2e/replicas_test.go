package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store/postgres"
	"github.com/evident-dev/evident/server/store/postgres/pgtest"
)

// TestReplicasFailover: two server replicas share one PostgreSQL database
// (and one CA); real agents, each given both addresses, spread over them
// and stream. The replica serving the most agents is SIGKILLed mid-stream:
// its agents fail over to the survivor, and in the end every observation
// each agent persisted is stored exactly once.
func TestReplicasFailover(t *testing.T) {
	db := pgtest.URL(t)
	root := t.TempDir()
	dirA, dirB := filepath.Join(root, "replica-a"), filepath.Join(root, "replica-b")
	a := startServerEnv(t, nil, dirA, "127.0.0.1:0", "--store", db)
	// The replicas share the CA (a deployment mounts the same pki secret
	// into each); each issues its own server certificate.
	if err := os.MkdirAll(filepath.Join(dirB, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(dirA, "pki", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, "pki", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := startServerEnv(t, nil, dirB, "127.0.0.1:0", "--store", db)
	replicas := map[string]*server{a.addr: a, b.addr: b}

	out, errOut, err := run(t, nil, serverBin, "secret", "create", "--data-dir", dirB, "--store", db)
	if err != nil {
		t.Fatalf("secret create on replica b: %v\n%s", err, errOut)
	}
	token := strings.TrimSpace(out)

	const agents = 6
	both := a.addr + "," + b.addr
	type ag struct {
		dir, device string
		p           *proc
	}
	var all []*ag
	for i := range agents {
		dir := filepath.Join(root, fmt.Sprintf("agent-%d", i))
		// Enrollment goes to whichever replica the agent picks, and is
		// stored where both see it.
		o, e, err := run(t, []string{"EVIDENT_ENROLL_TOKEN=" + token}, agentBin, "enroll", "--data-dir", dir, "--server", both)
		if err != nil {
			t.Fatalf("enroll agent %d: %v\n%s%s", i, err, o, e)
		}
		f := strings.Fields(o)
		if len(f) < 3 || f[0] != "enrolled" {
			t.Fatalf("enroll printed %q", o)
		}
		all = append(all, &ag{dir: dir, device: f[2]})
	}
	args := func(x *ag, servers string) []string {
		return []string{"run", "--data-dir", x.dir, "--server", servers, "--interval", "50ms",
			"--collectors", "osinfo,secureboot,tpm", "--log-level", "debug"}
	}
	for i, x := range all {
		x.p = start(t, fmt.Sprintf("agent-%d.log", i), agentBin, args(x, both)...)
	}
	pg, err := postgres.Open(context.Background(), db, true)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	stored := func(device string) int {
		c, err := pg.Counts(context.Background(), device)
		if err != nil {
			t.Fatal(err)
		}
		return c.Total
	}
	waitFor(t, "every agent streaming", 2*time.Minute, func() bool {
		for _, x := range all {
			if stored(x.device) < 20 {
				return false
			}
		}
		return true
	})

	// Which replica each agent streams to, from its own log.
	connected := regexp.MustCompile(`evidence stream connected.* server=(\S+)`)
	serverOf := func(x *ag) string {
		b, _ := os.ReadFile(x.p.log)
		m := connected.FindAllStringSubmatch(string(b), -1)
		if len(m) == 0 {
			t.Fatalf("agent %s logged no connected stream", x.device)
		}
		return m[len(m)-1][1]
	}
	per := map[string][]*ag{}
	for _, x := range all {
		per[serverOf(x)] = append(per[serverOf(x)], x)
	}
	victim := a.addr
	if len(per[b.addr]) > len(per[a.addr]) {
		victim = b.addr
	}
	survivor := a.addr
	if victim == a.addr {
		survivor = b.addr
	}
	t.Logf("agents per replica before the kill: %s=%d %s=%d; killing %s", a.addr, len(per[a.addr]), b.addr, len(per[b.addr]), victim)
	if len(per[victim]) == 0 {
		t.Fatalf("no agent streams to either replica: %v", per)
	}
	before := map[string]int{}
	for _, x := range all {
		before[x.device] = stored(x.device)
	}
	replicas[victim].p.kill()
	waitFor(t, "every agent delivering through the survivor", 2*time.Minute, func() bool {
		for _, x := range all {
			if stored(x.device) < before[x.device]+20 {
				return false
			}
		}
		return true
	})
	for _, x := range per[victim] {
		if got := serverOf(x); got != survivor {
			t.Errorf("agent %s of the killed replica now streams to %s, want %s", x.device, got, survivor)
		}
	}
	for _, x := range all {
		x.p.stop(t)
	}

	// Deliver what is left through the survivor, then compare each outbox
	// with the store: seqs 1..N, each stored once ((device_id, seq) is the
	// primary key, so Total == N with MinSeq 1 and MaxSeq N means exactly
	// once).
	total := 0
	for _, x := range all {
		if o, e, err := run(t, nil, agentBin, "run", "--once", "--data-dir", x.dir, "--server", both,
			"--collectors", "osinfo", "--once-timeout", "2m"); err != nil {
			t.Fatalf("run --once for %s: %v\n%s%s", x.device, err, o, e)
		}
		persisted := drained(t, x.dir)
		c, err := pg.Counts(context.Background(), x.device)
		if err != nil {
			t.Fatal(err)
		}
		if c.Total != int(persisted) || c.MinSeq != 1 || c.MaxSeq != persisted {
			t.Errorf("device %s: stored %d observations (seq %d..%d); agent persisted seqs 1..%d",
				x.device, c.Total, c.MinSeq, c.MaxSeq, persisted)
		}
		total += c.Total
	}
	// The chain shows no observation went in twice from two replicas: each
	// device's links are 1..N in order.
	for _, x := range all {
		head, err := pg.ChainHead(context.Background(), x.device)
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := pg.Counts(context.Background(), x.device); head.Index != uint64(c.Total) {
			t.Errorf("device %s: chain head at %d, %d observations stored", x.device, head.Index, c.Total)
		}
	}
	t.Logf("%d agents over 2 replicas, %d on the killed one; %d observations, each stored exactly once", agents, len(per[victim]), total)

	// The survivor folds the fleet's aggregate changes (each replica does,
	// every second), and the overview's counts agree with the intervals
	// they count.
	raw, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	waitFor(t, "the survivor folding the aggregate changes", time.Minute, func() bool {
		var n int
		if err := raw.QueryRow(`SELECT count(*) FROM posture_deltas`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	fc, err := pg.FleetCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int{}
	rows, err := raw.Query(`SELECT control_id, status, count(*) FROM control_states WHERE until_at IS NULL GROUP BY control_id, status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var c, st string
		var n int
		if err := rows.Scan(&c, &st, &n); err != nil {
			t.Fatal(err)
		}
		if want[c] == nil {
			want[c] = map[string]int{}
		}
		want[c][st] = n
	}
	if fc.Devices != agents || fmt.Sprint(fc.Controls) != fmt.Sprint(want) {
		t.Errorf("fleet counts after the run: %d devices, %v; want %d devices and the open intervals' %v", fc.Devices, fc.Controls, agents, want)
	}
}
