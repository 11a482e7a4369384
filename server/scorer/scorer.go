// Package scorer is the server's one scorer: it gathers what the policy
// evaluates for a device (its newest evidence per collector, its open
// control intervals, its TPM enrollment and latest attestation, its facts)
// and evaluates it. Ingest, the periodic rescore, reports and test
// fixtures all score through it, so they cannot drift apart.
package scorer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
)

// Store is what scoring reads.
type Store = store.ScoreReader

// Writer is what scoring and recording the states needs.
type Writer interface {
	Store
	store.Recorder
}

// Input gathers the evaluation input of one device as of now.
func Input(ctx context.Context, st Store, dev store.Device, now time.Time) (controls.Input, error) {
	latest, err := st.Latest(ctx, dev.ID)
	if err != nil {
		return controls.Input{}, err
	}
	open, err := st.CurrentStates(ctx, dev.ID)
	if err != nil {
		return controls.Input{}, err
	}
	current := make(map[string]store.ControlState, len(open))
	for _, s := range open {
		current[s.ControlID] = s
	}
	tpmEv, err := controls.LoadTPMEvidence(ctx, st, dev.ID, dev.GOOS)
	if err != nil {
		return controls.Input{}, err
	}
	lastSeen := dev.LastSeenAt
	if lastSeen == nil && len(latest) > 0 {
		lastSeen = &now // evidence is being stored: the device is being seen now
	}
	id := dev.ID
	return controls.Input{
		Now: now, Latest: latest, LastSeen: lastSeen, Current: current, TPM: tpmEv, Device: controls.FactsOf(dev),
		History: func(c string, limit int) ([]store.Observation, error) { return st.History(ctx, id, c, limit) },
	}, nil
}

// Evaluate scores one device as of now.
func Evaluate(ctx context.Context, st Store, p *controls.Policy, dev store.Device, now time.Time) ([]controls.Evaluation, error) {
	in, err := Input(ctx, st, dev, now)
	if err != nil {
		return nil, err
	}
	return p.Evaluate(in), nil
}

// Score scores a device as of at and records the resulting control states
// (what ingest does after each report, and the periodic rescore), with
// the device's policy groups for the read model. The plan is made from the
// open intervals the evaluation read; when another evaluation of the
// device was recorded in between (store.ErrConflict), the device is
// evaluated again on what is stored now, never recorded on stale input.
func Score(ctx context.Context, st Writer, p *controls.Policy, deviceID string, at time.Time) error {
	for n := range states.Attempts {
		if err := states.Backoff(ctx, n); err != nil {
			return err
		}
		plan, err := Plan(ctx, st, p, deviceID, at)
		if err != nil {
			return err
		}
		err = st.RecordStates(ctx, plan)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("scoring %s: %w (%d attempts)", deviceID, store.ErrConflict, states.Attempts)
}

// Plan evaluates a device as of at on what st reads and returns the
// interval changes to record: what Score records, and what ingest records
// in the transaction that stores a report (store.ScoredIngester).
func Plan(ctx context.Context, st Store, p *controls.Policy, deviceID string, at time.Time) (store.StatePlan, error) {
	dev, err := st.Device(ctx, deviceID)
	if err != nil {
		return store.StatePlan{}, err
	}
	in, err := Input(ctx, st, dev, at)
	if err != nil {
		return store.StatePlan{}, err
	}
	evals := p.Evaluate(in)
	next := make([]store.ControlState, len(evals))
	for i, e := range evals {
		next[i] = e.State()
	}
	var groups []string
	if facts, err := p.GroupsOf(in.Device); err == nil {
		groups = facts.Groups
	}
	current := make([]store.ControlState, 0, len(in.Current))
	for _, s := range in.Current {
		current = append(current, s)
	}
	plan := states.Plan(deviceID, current, next, groups, at)
	plan.RescoreAt = controls.RescoreAt(evals, at)
	return plan, nil
}
