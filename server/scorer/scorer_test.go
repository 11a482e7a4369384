package scorer_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/scorer"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// Scoring through the one scorer records what evaluating the same input
// gives, on a real store; a rescore later turns stale evidence unknown.
func TestScoreRecordsWhatEvaluateSays(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const id = "dev_cccccccccccccccccccccccccccccccc"
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if _, err := st.EnrollDevice(ctx, store.Device{ID: id, Hostname: "c", GOOS: "linux", GOARCH: "amd64", MachineID: "m-c", EnrolledAt: at.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	fw, _ := json.Marshal(evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny,
		Reason: "IPv4 inbound denied by default", Backends: []evidence.FirewallBackend{{Name: "nftables", Active: true}}})
	obs := []store.Observation{{Seq: 1, Collector: evidence.Firewall, CollectedAt: at, Status: "ok", ParserVersion: evidence.FirewallParserVersion, Payload: fw}}
	if _, err := st.Ingest(ctx, id, obs, at); err != nil {
		t.Fatal(err)
	}
	p := controls.Default()
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{at, store.Pass},
		{at.Add(72 * time.Hour), store.Unknown}, // past the 48 h evidence window
	} {
		if err := scorer.Score(ctx, st, p, id, tt.at); err != nil {
			t.Fatal(err)
		}
		dev, err := st.Device(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		evals, err := scorer.Evaluate(ctx, st, p, dev, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		open, err := st.CurrentStates(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]string{}
		for _, s := range open {
			stored[s.ControlID] = s.Status
		}
		for _, e := range evals {
			if stored[e.Control.ID] != e.Status {
				t.Errorf("at %s: %s stored %s, evaluated %s", tt.at, e.Control.ID, stored[e.Control.ID], e.Status)
			}
			if e.Control.ID == "DC-FW-01" && e.Status != tt.want {
				t.Errorf("at %s: DC-FW-01 = %s (%s); want %s", tt.at, e.Status, e.Reason, tt.want)
			}
		}
	}
}

// racing records, just before the first plan it is given, another
// report's evidence and score for the same device: the plan it was given
// is then stale.
type racing struct {
	*sqlite.Store
	race func() error
}

func (r *racing) RecordStates(ctx context.Context, p store.StatePlan) error {
	if r.race != nil {
		race := r.race
		r.race = nil
		if err := race(); err != nil {
			return err
		}
	}
	return r.Store.RecordStates(ctx, p)
}

// TestScoreReevaluatesOnConflict: when another evaluation of the device is
// recorded between reading its state and recording, the scorer evaluates
// again on what is stored now; it never records the older evaluation's
// result over the newer one.
func TestScoreReevaluatesOnConflict(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const id = "dev_dddddddddddddddddddddddddddddddd"
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if _, err := st.EnrollDevice(ctx, store.Device{ID: id, Hostname: "d", GOOS: "linux", MachineID: "m-d", EnrolledAt: at.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	fwObs := func(seq uint64, verdict string, at time.Time) []store.Observation {
		fw, _ := json.Marshal(evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: verdict == evidence.FirewallVerdictDeny, Verdict: verdict,
			Reason: "firewall " + verdict, Backends: []evidence.FirewallBackend{{Name: "nftables", Active: true}}})
		return []store.Observation{{Seq: seq, Collector: evidence.Firewall, CollectedAt: at, Status: "ok", ParserVersion: evidence.FirewallParserVersion, Payload: fw}}
	}
	p := controls.Default()
	if _, err := st.Ingest(ctx, id, fwObs(1, evidence.FirewallVerdictDeny, at), at); err != nil {
		t.Fatal(err)
	}
	if err := scorer.Score(ctx, st, p, id, at); err != nil {
		t.Fatal(err)
	}
	// The rescore at +1 min reads "deny"; before it records, a report
	// saying "open" arrives and is scored.
	r := &racing{Store: st}
	r.race = func() error {
		later := at.Add(90 * time.Second)
		if _, err := st.Ingest(ctx, id, fwObs(2, evidence.FirewallVerdictOpen, later), later); err != nil {
			return err
		}
		return scorer.Score(ctx, st, p, id, later)
	}
	if err := scorer.Score(ctx, r, p, id, at.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r.race != nil {
		t.Fatal("the race never ran")
	}
	hist, err := st.StateHistory(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var fw []string
	for _, s := range hist {
		if s.ControlID == "DC-FW-01" {
			fw = append(fw, s.Status)
		}
	}
	// Pass from the first report, fail from the racing one, which the
	// rescore, evaluated again, confirms.
	if len(fw) != 2 || fw[0] != store.Pass || fw[1] != store.Fail {
		t.Errorf("DC-FW-01 history = %v, want [pass fail]: the rescore must not record its stale pass", fw)
	}
}
