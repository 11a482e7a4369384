//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"time"

	"github.com/evident-dev/evident/internal/diskfull"
)

// A fault is injected and healed by inject; the run then waits for the
// evidence of every device to flow again.
type fault struct {
	name   string
	inject func(r *rig, rnd *rand.Rand) (string, error)
}

var faults = []fault{
	{"agent-sigkill", func(r *rig, rnd *rand.Rand) (string, error) {
		a := r.agents[rnd.IntN(len(r.agents))]
		// At a random point of its cycle: reports are always in flight.
		time.Sleep(time.Duration(rnd.IntN(int(r.cfg.interval))))
		a.p.kill()
		return fmt.Sprintf("agent %d", a.i), r.startAgent(a)
	}},
	{"server-sigkill", func(r *rig, rnd *rand.Rand) (string, error) {
		time.Sleep(time.Duration(rnd.IntN(int(r.cfg.interval))))
		r.srv.kill()
		r.proxy.Cut()
		return "", r.startServer(r.addr)
	}},
	{"network-cut", func(r *rig, _ *rand.Rand) (string, error) {
		r.proxy.Cut()
		return "", nil
	}},
	{"partition", func(r *rig, rnd *rand.Rand) (string, error) {
		// Reports leave the agents and vanish; no ack comes back. The
		// agents notice only when the connection is cut.
		hold := 200*time.Millisecond + time.Duration(rnd.IntN(int(1800*time.Millisecond)))
		r.proxy.Blackhole.Store(true)
		time.Sleep(hold)
		r.proxy.Cut()
		return hold.Round(time.Millisecond).String(), nil
	}},
	{"lost-acks", func(r *rig, _ *rand.Rand) (string, error) {
		// The server stores what arrives, the agents never hear of it:
		// they resend it all on the next connection.
		before, err := r.stored()
		if err != nil {
			return "", err
		}
		r.proxy.DropAcks.Store(true)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			now, err := r.stored()
			if err == nil && sum(now) > sum(before)+3 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		r.proxy.Cut()
		return "", nil
	}},
	{"server-disk-full", func(r *rig, rnd *rand.Rand) (string, error) {
		// SQLite reuses its WAL after a checkpoint, which a full disk still
		// takes: held until the server refuses a report (at most 15 s),
		// then a little longer.
		follow, err := followLog(r.srv.log)
		if err != nil {
			return "", err
		}
		defer follow.Close()
		b, err := diskfull.Fill(r.srvDir)
		if err != nil {
			return "", err
		}
		began := time.Now()
		refused := false
		for !refused && time.Since(began) < 15*time.Second {
			time.Sleep(20 * time.Millisecond)
			refused = follow.saw(storeFullLine)
		}
		time.Sleep(time.Duration(rnd.IntN(int(time.Second))))
		what := time.Since(began).Round(time.Millisecond).String()
		if refused {
			r.bit["server-disk-full"]++
		} else {
			what += ", no report refused"
		}
		return what, b.Release()
	}},
	{"agent-disk-full", func(r *rig, rnd *rand.Rand) (string, error) {
		// With the server unreachable as well: an outbox that is drained
		// as fast as it fills reuses its free pages, which a full disk
		// still takes; one that grows needs new ones, and is refused.
		a := r.agents[rnd.IntN(len(r.agents))]
		b, err := diskfull.Fill(a.dir)
		if err != nil {
			return "", err
		}
		// The outbox grows until it needs a page it never had: held until
		// the agent counts a refused cycle (at most 15 s), then a few more
		// cycles.
		r.proxy.Blackhole.Store(true)
		began := time.Now()
		refused := a.waitUnrecorded(15 * time.Second)
		time.Sleep(time.Duration(2+rnd.IntN(8)) * r.cfg.interval)
		what := fmt.Sprintf("agent %d, %s", a.i, time.Since(began).Round(time.Millisecond))
		if refused {
			r.bit["agent-disk-full"]++
		} else {
			what += ", no cycle refused"
		}
		err = b.Release()
		r.proxy.Cut()
		if err != nil {
			return what, err
		}
		// The count of what was not stored lives in the agent's memory
		// until its next stored cycle carries it: the next fault must
		// not kill it before.
		return what, a.waitRecorded(30 * time.Second)
	}},
	{"clock-jump", func(r *rig, rnd *rand.Rand) (string, error) {
		// Mostly forward (up to 6 h), sometimes back (up to 20 min), never
		// before the enrollment: the clock of the server and the agents
		// moves together, as after an NTP step.
		d := time.Duration(1+rnd.IntN(360)) * time.Minute
		if rnd.IntN(3) == 0 && r.clockNow > 20*time.Minute {
			d = -time.Duration(1+rnd.IntN(20)) * time.Minute
		}
		return fmt.Sprintf("%+v", d), r.setClock(r.clockNow + d)
	}},
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// faultStats are one kind's figures.
type faultStats struct {
	count       int
	maxRecovery time.Duration
	total       time.Duration
}

// inject runs n faults, each kind in turn in a shuffled order, stopping
// early when the time budget is spent. It returns the faults by kind.
func (r *rig) inject(rnd *rand.Rand, n int, budget time.Time) (map[string]*faultStats, int, error) {
	stats := map[string]*faultStats{}
	for _, f := range faults {
		stats[f.name] = &faultStats{}
	}
	done, started := 0, time.Now()
	var order []int
	for done < n {
		if time.Now().After(budget) {
			return stats, done, errBudget
		}
		if err := r.ctx.Err(); err != nil {
			return stats, done, fmt.Errorf("interrupted: %w", context.Cause(r.ctx))
		}
		if len(order) == 0 {
			order = rnd.Perm(len(faults))
		}
		f := faults[order[0]]
		order = order[1:]
		what, err := f.inject(r, rnd)
		if err != nil {
			return stats, done, fmt.Errorf("fault %d (%s): %w", done+1, f.name, err)
		}
		healed := time.Now()
		before, err := r.stored()
		if err != nil {
			return stats, done, err
		}
		if err := r.waitFlowing(before, r.cfg.recover); err != nil {
			return stats, done, fmt.Errorf("fault %d (%s %s): %w", done+1, f.name, what, err)
		}
		took := time.Since(healed)
		s := stats[f.name]
		s.count++
		s.total += took
		s.maxRecovery = max(s.maxRecovery, took)
		done++
		if r.cfg.verbose {
			fmt.Fprintf(r.log, "  %3d %-17s %-22s flowing again after %s\n", done, f.name, what, took.Round(time.Millisecond))
		} else if done%20 == 0 || done == n {
			fmt.Fprintf(r.log, "  %d/%d faults, %s\n", done, n, time.Since(started).Round(time.Second))
		}
	}
	return stats, done, nil
}

var errBudget = errors.New("time budget spent")

// storeFullLine is the server's log of a report its full disk refused.
var storeFullLine = regexp.MustCompile(`storing a report failed.*(disk is full|no space left)`)
