package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

func testLeases(t *testing.T, open func(*testing.T) store.Store) {
	type take struct {
		holder string
		now    time.Duration // after t0
		ttl    time.Duration
		want   bool
	}
	tests := []struct {
		name  string
		takes []take
	}{
		{"free lease is taken", []take{{"a", 0, time.Minute, true}}},
		{"holder renews before expiry", []take{{"a", 0, time.Minute, true}, {"a", 30 * time.Second, time.Minute, true}}},
		{"other refused before expiry", []take{{"a", 0, time.Minute, true}, {"b", 59 * time.Second, time.Minute, false}}},
		{"other takes at expiry", []take{{"a", 0, time.Minute, true}, {"b", time.Minute, time.Minute, true}, {"a", 90 * time.Second, time.Minute, false}}},
		{"renewal extends", []take{{"a", 0, time.Minute, true}, {"a", 50 * time.Second, time.Minute, true}, {"b", 100 * time.Second, time.Minute, false}, {"b", 110 * time.Second, time.Minute, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			ctx := context.Background()
			for i, tk := range tt.takes {
				now := at(tk.now)
				got, err := st.TakeLease(ctx, "rescore", tk.holder, now, now.Add(tk.ttl))
				if err != nil {
					t.Fatalf("take %d: %v", i, err)
				}
				if got != tk.want {
					t.Fatalf("take %d (%s at +%s) = %v, want %v", i, tk.holder, tk.now, got, tk.want)
				}
			}
			// Leases of other names are independent.
			if ok, err := st.TakeLease(ctx, "retention", "z", t0, at(time.Hour)); err != nil || !ok {
				t.Errorf("another lease name: %v, %v", ok, err)
			}
		})
	}
	t.Run("racing holders", func(t *testing.T) {
		st := open(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := st.TakeLease(context.Background(), "rescore", string(rune('a'+i)), t0, at(time.Minute))
				if err != nil {
					t.Errorf("holder %d: %v", i, err)
				}
				if ok {
					mu.Lock()
					won++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if won != 1 {
			t.Errorf("%d holders took the lease at once, want 1", won)
		}
	})
}
