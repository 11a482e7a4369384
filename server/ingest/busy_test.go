package ingest

import (
	"testing"
	"time"
)

// TestBusyRetryBounds: the pause a Busy answer asks for is the configured
// one (the default when unset) plus up to half again, and never beyond
// what an agent honours.
func TestBusyRetryBounds(t *testing.T) {
	tests := []struct {
		set, lo, hi time.Duration
	}{
		{0, DefaultBusyRetry, DefaultBusyRetry * 3 / 2},
		{100 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond},
		{time.Hour, MaxBusyRetry, MaxBusyRetry * 3 / 2},
	}
	for _, tt := range tests {
		s := &Server{BusyRetry: tt.set}
		spread := map[time.Duration]bool{}
		for range 200 {
			d := s.busyRetry()
			if d < tt.lo || d > tt.hi {
				t.Fatalf("BusyRetry %s: asked for %s; want %s to %s", tt.set, d, tt.lo, tt.hi)
			}
			spread[d] = true
		}
		if len(spread) < 50 {
			t.Errorf("BusyRetry %s: only %d distinct pauses in 200: a fleet would return in step", tt.set, len(spread))
		}
	}
	if MaxBusyRetry*3/2 >= 5*time.Minute {
		t.Errorf("the longest pause asked for, %s, reaches the agent's bound of 5 min", MaxBusyRetry*3/2)
	}
}

// TestQuotaRefund: a report refused as Busy gives back what the quota
// check took, so refusals cannot use up a device's allowance.
func TestQuotaRefund(t *testing.T) {
	var q quotas
	now := time.Now()
	for i := range 3 {
		if ok, _ := q.take("d", 40, 400, now, 100, 1000); !ok {
			t.Fatalf("take %d refused after refunds", i+1)
		}
		q.refund("d", 40, 400, 100, 1000)
	}
	if ok, _ := q.take("d", 100, 1000, now, 100, 1000); !ok {
		t.Fatal("the whole allowance was not back after the refunds")
	}
	q.refund("d", 500, 5000, 100, 1000) // never beyond the allowance
	if ok, _ := q.take("d", 101, 10, now, 100, 1000); ok {
		t.Fatal("a refund raised the allowance past its maximum")
	}
	q.refund("unknown", 1, 1, 100, 1000) // a device never charged: nothing to do
}
