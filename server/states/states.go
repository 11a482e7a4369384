// Package states holds the interval rules of control states: how an
// evaluation of a device becomes intervals (device, control, status, since,
// until). A store only stores the plan these rules make (store.StatePlan),
// so every backend records the same history.
//
// The rules:
//   - a control whose open interval has the evaluated status keeps it: the
//     interval is confirmed (reason and evidence updated, evaluations
//     counted, evaluated_at never moves back);
//   - a different status closes the open interval and opens a new one at
//     the evaluation's time; intervals never run backwards, so a late
//     evaluation (older than the open interval's start) closes and opens at
//     that start;
//   - a control with no open interval opens one;
//   - a device is compliant when every control of the policy passes or
//     does not apply (and there is at least one).
package states

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// Plan turns an evaluation (next, one state per control of the policy) of a
// device with open intervals current into the changes to store.
func Plan(deviceID string, current, next []store.ControlState, groups []string, at time.Time) store.StatePlan {
	p := store.StatePlan{DeviceID: deviceID, At: at, Compliant: len(next) > 0, Groups: slices.Clone(groups)}
	open := make(map[string]store.ControlState, len(current))
	for _, s := range current {
		open[s.ControlID] = s
	}
	for _, n := range next {
		if n.Status != store.Pass && n.Status != store.NotApplicable {
			p.Compliant = false
		}
		o, ok := open[n.ControlID]
		switch {
		case ok && o.Status == n.Status:
			c := n
			c.ID, c.Since, c.EvaluatedAt = o.ID, o.Since, maxTime(o.EvaluatedAt, at)
			p.Confirm = append(p.Confirm, c)
			continue
		case ok:
			start := maxTime(at, o.Since)
			o.Until = &start
			p.Close = append(p.Close, o)
			n.Since = start
		default:
			n.Since = at
		}
		n.ID, n.Until, n.EvaluatedAt, n.Evaluations = 0, nil, at, 1
		p.Open = append(p.Open, n)
	}
	return p
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Attempts bounds the retries when another evaluation of the same device
// lands between reading its intervals and recording the plan.
const Attempts = 5

// Backoff waits before attempt n (from 1) after a conflict: a random
// 0 to 2^n ms, so two evaluations of one device that keep colliding (two
// replicas, a report racing a rescore) fall out of step instead of
// colliding again. It returns early with ctx's error when ctx ends.
func Backoff(ctx context.Context, n int) error {
	if n <= 0 {
		return ctx.Err()
	}
	d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(n, 10)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Record records an evaluation of a device at time at: it reads the open
// intervals, plans, and stores the plan, planning again when a concurrent
// evaluation of the same device changed them first. For states that do not
// depend on the stored ones (fixtures, imports); scoring re-evaluates on
// a conflict instead (scorer.Score).
func Record(ctx context.Context, st store.Recorder, deviceID string, next []store.ControlState, groups []string, at time.Time) error {
	for n := range Attempts {
		if err := Backoff(ctx, n); err != nil {
			return err
		}
		cur, err := st.CurrentStates(ctx, deviceID)
		if err != nil {
			return err
		}
		err = st.RecordStates(ctx, Plan(deviceID, cur, next, groups, at))
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("recording the states of %s: %w (%d attempts)", deviceID, store.ErrConflict, Attempts)
}
