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
