package sqlite_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestReportScoringReadsEvidenceOnDemand: a report's scoring reads the
// open intervals without their evidence, and reads one interval's
// evidence when a check asks for it. The patches check carries "pending
// since" forward in its open interval's evidence; once retention has
// emptied the oldest observation, the history can no longer tell it, so
// a report that still says the updates were pending since the first one
// read its interval's evidence. The test fails when no evidence is read
// (the since moves to the second report), and when the evidence of every
// interval is read (the whole states' read, or one read per control).
func TestReportScoringReadsEvidenceOnDemand(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "evident.db"), false)
	const dev = "dev-lazy"
	if _, err := st.EnrollDevice(ctx, store.Device{ID: dev, Hostname: "lazy", GOOS: "linux", MachineID: strings.Repeat("a", 32), EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	policy := controls.Default()
	day := 24 * time.Hour
	seq := uint64(0)
	report := func(at time.Time) {
		t.Helper()
		idx := at.Add(-time.Hour)
		payloads := map[string]any{
			evidence.Patches: evidence.PatchesPayload{Manager: "apt", OS: evidence.OSRelease{ID: "debian", VersionID: "12"},
				PendingUpdates: 3, PendingSecurityUpdates: 2,
				PendingSecurity: []evidence.Package{{Name: "openssl"}, {Name: "libc6"}},
				Index:           &evidence.PackageIndex{Refreshed: &idx, Source: "/var/lib/apt/lists"}},
			evidence.Firewall:   map[string]any{},
			evidence.ScreenLock: map[string]any{},
		}
		var obs []store.Observation
		for _, c := range []string{evidence.Patches, evidence.Firewall, evidence.ScreenLock} {
			b, err := json.Marshal(payloads[c])
			if err != nil {
				t.Fatal(err)
			}
			seq++
			obs = append(obs, store.Observation{Seq: seq, Collector: c, CollectedAt: at, ReceivedAt: at,
				Status: string(evidence.StatusOK), ParserVersion: parserVersion(c), Payload: b, Sources: []byte(`[]`)})
		}
		if err := ingestScored(ctx, st, policy, dev, obs, at); err != nil {
			t.Fatalf("report at %s: %v", at, err)
		}
	}
	report(t0)
	report(t0.Add(day))
	// Retention empties the first report's observations (not the latest).
	if res, err := st.Prune(ctx, t0.Add(day/2), t0.Add(day+time.Hour)); err != nil || res.Observations == 0 {
		t.Fatalf("Prune = %+v, %v: want the first report's observations emptied", res, err)
	}

	var mu sync.Mutex
	var full, one int
	sqlite.Dialect.Trace = func(q string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(q, "SELECT evidence FROM control_states WHERE id = ?"):
			one++
		case strings.Contains(q, "evidence, since_at") && strings.Contains(q, "FROM control_states"):
			full++
		}
	}
	t.Cleanup(func() { sqlite.Dialect.Trace = nil })
	report(t0.Add(2 * day))
	sqlite.Dialect.Trace = nil
	if full != 0 || one != 1 {
		t.Errorf("the report's scoring read the evidence of %d interval(s) one by one and ran %d whole reads of it; want 1 and 0 (only the patches check asks)", one, full)
	}

	states, err := st.CurrentStates(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, s := range states {
		if s.ControlID != "DC-PATCH-01" {
			continue
		}
		var ev struct {
			Facts struct {
				Since string `json:"pending_since"`
			} `json:"facts"`
		}
		if err := json.Unmarshal(s.Evidence, &ev); err != nil {
			t.Fatalf("DC-PATCH-01 evidence %s: %v", s.Evidence, err)
		}
		got = ev.Facts.Since
	}
	if want := t0.UTC().Format(time.RFC3339Nano); got != want {
		t.Fatalf("DC-PATCH-01 pending since %q, want %q (the first report's, carried in the open interval's evidence)", got, want)
	}
}

// parserVersion is today's agent's parser version of collector c.
func parserVersion(c string) int {
	if c == evidence.Patches {
		return evidence.PatchesParserVersion
	}
	return 1
}
