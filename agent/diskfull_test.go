package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/internal/diskfull"
	"github.com/evident-dev/evident/platform"
)

// bulkyCollector returns a payload large enough that every cycle needs new
// outbox pages, so a full disk refuses it (bbolt reuses freed pages, which
// a full disk still accepts).
type bulkyCollector struct{}

func (bulkyCollector) Name() string { return "bulky" }
func (bulkyCollector) Collect(context.Context, platform.Host) (collectors.Result, error) {
	return collectors.Result{Payload: map[string]string{"blob": strings.Repeat("x", 96<<10)}}, nil
}

// TestDiskFullCyclesReportedAsGap runs collection cycles on a real full
// disk (a bounded tmpfs filled by a ballast file): the cycles the outbox
// cannot store fail with ENOSPC, the outbox stays intact and issues no seq
// for them, and the first cycle stored afterwards carries a gap record
// saying how many cycles and observations were lost, when and why.
func TestDiskFullCyclesReportedAsGap(t *testing.T) {
	dir := diskfull.MountForTest(t, 8<<20)
	a, clk, _ := newTestAgent(t, Config{DataDir: dir}, bulkyCollector{})
	ctx := context.Background()
	if err := a.cycle(ctx, nil); err != nil {
		t.Fatalf("cycle with room: %v", err)
	}
	ballast, err := diskfull.Fill(dir)
	if err != nil {
		t.Fatal(err)
	}
	const lost = 3
	from := clk.Now()
	for i := range lost {
		err := a.cycle(ctx, nil)
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("cycle %d on a full disk: %v; want ENOSPC", i+1, err)
		}
		if st := a.Status(); st.UnrecordedCycles != i+1 {
			t.Fatalf("after %d failed cycles status says %d unrecorded", i+1, st.UnrecordedCycles)
		}
		clk.advance(a.cfg.Interval)
	}
	to := clk.Now().Add(-a.cfg.Interval)
	if err := ballast.Release(); err != nil {
		t.Fatal(err)
	}
	if err := a.cycle(ctx, nil); err != nil {
		t.Fatalf("cycle after space came back: %v", err)
	}
	last := lastObservations(t, a)
	gap := last[gapCollector]
	if gap == nil {
		t.Fatalf("the first stored cycle carries no %s record, only %d others", gapCollector, len(last))
	}
	var p struct {
		Event        string `json:"event"`
		Cycles       int    `json:"cycles"`
		Observations int    `json:"observations"`
		From, To     time.Time
		Reason       string `json:"reason"`
	}
	if err := json.Unmarshal(gap.GetPayloadJson(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Event != "not_recorded" || p.Cycles != lost || p.Observations != lost ||
		!p.From.Equal(from) || !p.To.Equal(to) ||
		!strings.Contains(p.Reason, "no space left on device") {
		t.Errorf("gap record %s; want %d cycles of 1 observation from %s to %s, for lack of space", gap.GetPayloadJson(), lost, from, to)
	}
	if st := a.Status(); st.UnrecordedCycles != 0 {
		t.Errorf("status still says %d unrecorded cycles after the gap was stored", st.UnrecordedCycles)
	}

	// Nothing half-written: the outbox holds the two stored cycles and the
	// gap record with seqs 1..3, and reopens cleanly.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(OutboxPath(dir), outbox.Options{})
	if err != nil {
		t.Fatalf("outbox after a full disk: %v", err)
	}
	defer ob.Close()
	entries, err := ob.Pending(0, 1<<30, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, e := range entries {
		if e.Seq != uint64(i+1) {
			t.Errorf("entry %d has seq %d", i, e.Seq)
		}
		o := decode(t, e.Data)
		got = append(got, o.GetCollector())
	}
	if want := []string{"bulky", "bulky", gapCollector}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("outbox holds %v; want %v", got, want)
	}
}
