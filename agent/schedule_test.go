package agent

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// TestPushedSchedule: the server's Config sets the cycle interval and
// collectors' own intervals; a scheduled cycle runs only the collectors
// due; values out of bounds are ignored; an empty Config restores the
// agent's own interval.
func TestPushedSchedule(t *testing.T) {
	a := &Agent{cfg: Config{Interval: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	names := []string{"firewall", "osinfo", "packages"}
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if got := a.due(t0, names); got != nil {
		t.Fatalf("before any run: due %v, want all (nil)", got)
	}
	if !a.applyConfig(&evidentv1.Config{IntervalSeconds: 900, CollectorIntervalSeconds: map[string]uint32{"packages": 6 * 3600, "firewall": 60, "bogus": 0}}) {
		t.Fatal("applyConfig reported no change")
	}
	if a.applyConfig(&evidentv1.Config{IntervalSeconds: 900, CollectorIntervalSeconds: map[string]uint32{"packages": 6 * 3600, "firewall": 60}}) {
		t.Error("the same Config again reported a change")
	}
	if w := a.nextWait(); w != time.Minute {
		t.Errorf("nextWait = %s, want the shortest interval 1m", w)
	}
	a.ran(t0, names)
	steps := []struct {
		after time.Duration
		want  []string // nil: all
	}{
		{30 * time.Second, []string{}},
		{time.Minute, []string{"firewall"}},
		{15 * time.Minute, []string{"firewall", "osinfo"}},
		{6 * time.Hour, nil},
	}
	for _, s := range steps {
		got := a.due(t0.Add(s.after), names)
		if (got == nil) != (s.want == nil) || !slices.Equal(got, s.want) {
			t.Errorf("%s after the last run: due %v, want %v", s.after, got, s.want)
		}
	}
	// Out of bounds: ignored, the agent's own interval stays.
	a.applyConfig(&evidentv1.Config{IntervalSeconds: 30 * 24 * 3600, CollectorIntervalSeconds: map[string]uint32{"packages": 30 * 24 * 3600}})
	if iv, per, fromServer := a.scheduleStatus(); iv != "1h0m0s" || per != nil || fromServer {
		t.Errorf("after an out-of-bounds Config: %s %v %v", iv, per, fromServer)
	}
	a.applyConfig(&evidentv1.Config{IntervalSeconds: 120})
	if iv, _, fromServer := a.scheduleStatus(); iv != "2m0s" || !fromServer {
		t.Errorf("pushed interval: %s (from server %v)", iv, fromServer)
	}
	a.applyConfig(&evidentv1.Config{})
	if iv, _, fromServer := a.scheduleStatus(); iv != "1h0m0s" || fromServer {
		t.Errorf("after an empty Config: %s (from server %v); want the agent's own 1h", iv, fromServer)
	}
}
