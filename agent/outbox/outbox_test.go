package outbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// gapPrefix marks gap records so tests can tell them from observations.
const gapPrefix = "GAP"

func encodeGap(g Gap) []byte {
	js, _ := json.Marshal(g)
	return append([]byte(gapPrefix), js...)
}

func decodeGap(t *testing.T, b []byte) (Gap, bool) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte(gapPrefix)) {
		return Gap{}, false
	}
	var g Gap
	if err := json.Unmarshal(b[len(gapPrefix):], &g); err != nil {
		t.Fatalf("decode gap %q: %v", b, err)
	}
	return g, true
}

func open(t *testing.T, path string, opts Options) *Outbox {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testTime }
	}
	o, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return o
}

func tempPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "state", "outbox.db")
}

func item(n, size int) []byte {
	b := bytes.Repeat([]byte{'.'}, size)
	copy(b, fmt.Sprintf("obs-%d", n))
	return b
}

func seqs(es []Entry) []uint64 {
	var s []uint64
	for _, e := range es {
		s = append(s, e.Seq)
	}
	return s
}

func rangeSeqs(first, last uint64) []uint64 {
	var s []uint64
	for i := first; i <= last; i++ {
		s = append(s, i)
	}
	return s
}

func mustStats(t *testing.T, o *Outbox) Stats {
	t.Helper()
	s, err := o.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

func mustPending(t *testing.T, o *Outbox, after uint64) []Entry {
	t.Helper()
	es, err := o.Pending(after, 0, 0)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return es
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := tempPath(t)
	open(t, path, Options{})
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// Windows has no Unix permission bits; only check where they exist.
		if perm := fi.Mode().Perm(); perm != want && runtime.GOOS != "windows" {
			t.Errorf("%s mode = %o, want %o", p, perm, want)
		}
	}
}

func TestAppendPendingDurable(t *testing.T) {
	path := tempPath(t)
	o := open(t, path, Options{})

	batches := [][][]byte{
		{item(1, 10)},
		{item(2, 10), item(3, 20), item(4, 30)},
		{item(5, 0)}, // empty observations are stored like any other
	}
	var want []Entry
	var prev uint64
	for _, b := range batches {
		first, last, err := o.Append(b...)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if first != prev+1 || last != first+uint64(len(b))-1 {
			t.Fatalf("Append(%d items) = %d..%d after %d, want %d..%d", len(b), first, last, prev, prev+1, prev+uint64(len(b)))
		}
		for i, d := range b {
			want = append(want, Entry{Seq: first + uint64(i), Data: d})
		}
		prev = last
	}
	if f, l, err := o.Append(); f != 0 || l != 0 || err != nil {
		t.Errorf("Append() = %d, %d, %v; want 0, 0, nil", f, l, err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o = open(t, path, Options{})
	got := mustPending(t, o, 0)
	if len(got) != len(want) {
		t.Fatalf("after reopen Pending = %v, want seqs %v", seqs(got), seqs(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("entry %d = %d %q, want %d %q", i, got[i].Seq, got[i].Data, want[i].Seq, want[i].Data)
		}
	}
	st := mustStats(t, o)
	if st.NextSeq != prev+1 || st.Depth != len(want) || st.Bytes != 70 {
		t.Errorf("Stats = %+v, want NextSeq %d Depth %d Bytes 70", st, prev+1, len(want))
	}
	if first, _, err := o.Append(item(6, 10)); err != nil || first != prev+1 {
		t.Errorf("Append after reopen = %d, %v; want seq %d", first, err, prev+1)
	}
}

func TestAck(t *testing.T) {
	tests := []struct {
		name      string
		acks      []uint64 // all but the last must succeed
		wantErr   error
		wantAcked uint64
		wantLeft  []uint64
	}{
		{"zero is a no-op", []uint64{0}, nil, 0, rangeSeqs(1, 10)},
		{"partial", []uint64{3}, nil, 3, rangeSeqs(4, 10)},
		{"all", []uint64{10}, nil, 10, nil},
		{"cumulative", []uint64{2, 7}, nil, 7, rangeSeqs(8, 10)},
		{"old ack is a no-op", []uint64{6, 4}, nil, 6, rangeSeqs(7, 10)},
		{"repeated ack is a no-op", []uint64{6, 6}, nil, 6, rangeSeqs(7, 10)},
		{"beyond issued", []uint64{11}, ErrBadAck, 0, rangeSeqs(1, 10)},
		{"beyond issued after partial", []uint64{5, 1 << 40}, ErrBadAck, 5, rangeSeqs(6, 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tempPath(t)
			o := open(t, path, Options{NoSync: true})
			for i := 1; i <= 10; i++ {
				if _, _, err := o.Append(item(i, 100)); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			for _, a := range tt.acks {
				err = o.Ack(a)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("last Ack = %v, want %v", err, tt.wantErr)
			}

			// A reconnecting sender resends from last acked + 1.
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			o = open(t, path, Options{NoSync: true})
			st := mustStats(t, o)
			if st.LastAcked != tt.wantAcked {
				t.Errorf("LastAcked = %d, want %d", st.LastAcked, tt.wantAcked)
			}
			if got := seqs(mustPending(t, o, st.LastAcked)); !slices.Equal(got, tt.wantLeft) {
				t.Errorf("Pending(%d) = %v, want %v", st.LastAcked, got, tt.wantLeft)
			}
			if st.Depth != len(tt.wantLeft) || st.Bytes != int64(100*len(tt.wantLeft)) {
				t.Errorf("Stats = %+v, want Depth %d Bytes %d", st, len(tt.wantLeft), 100*len(tt.wantLeft))
			}
			if st.NextSeq != 11 {
				t.Errorf("NextSeq = %d, want 11", st.NextSeq)
			}
		})
	}
}

func TestSizeBound(t *testing.T) {
	// MaxBytes 1000 holds ten 100-byte items; appending three more must drop
	// the oldest. With a Gap encoder its record (about 80 bytes) needs one more.
	tests := []struct {
		name      string
		gap       func(Gap) []byte
		wantGap   Gap
		wantKept  []uint64 // observations kept
		wantGapAt uint64   // seq of the gap record, 0 if none
	}{
		{"gap record", encodeGap, Gap{FirstSeq: 1, LastSeq: 4, Count: 4, Bytes: 400, At: testTime}, rangeSeqs(5, 13), 14},
		{"meta only", nil, Gap{FirstSeq: 1, LastSeq: 3, Count: 3, Bytes: 300, At: testTime}, rangeSeqs(4, 13), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := open(t, tempPath(t), Options{MaxBytes: 1000, Gap: tt.gap, NoSync: true})
			for i := 1; i <= 10; i++ {
				if _, _, err := o.Append(item(i, 100)); err != nil {
					t.Fatal(err)
				}
			}
			if st := mustStats(t, o); st.Bytes != 1000 || st.Dropped != 0 {
				t.Fatalf("full outbox Stats = %+v, want Bytes 1000, nothing dropped", st)
			}
			first, last, err := o.Append(item(11, 100), item(12, 100), item(13, 100))
			if err != nil || first != 11 || last != 13 {
				t.Fatalf("Append = %d..%d, %v; want 11..13", first, last, err)
			}

			var kept []uint64
			var gapSeq uint64
			for _, e := range mustPending(t, o, 0) {
				if g, ok := decodeGap(t, e.Data); ok {
					gapSeq = e.Seq
					if g != tt.wantGap {
						t.Errorf("gap record = %+v, want %+v", g, tt.wantGap)
					}
					continue
				}
				if want := item(int(e.Seq), 100); !bytes.Equal(e.Data, want) {
					t.Errorf("entry %d = %.10q, want %.10q", e.Seq, e.Data, want)
				}
				kept = append(kept, e.Seq)
			}
			if !slices.Equal(kept, tt.wantKept) || gapSeq != tt.wantGapAt {
				t.Errorf("kept %v, gap at %d; want %v, gap at %d", kept, gapSeq, tt.wantKept, tt.wantGapAt)
			}
			st := mustStats(t, o)
			if st.Dropped != uint64(tt.wantGap.Count) || st.Bytes > 1000 {
				t.Errorf("Stats = %+v, want Dropped %d and Bytes <= 1000", st, tt.wantGap.Count)
			}
			js, err := o.Meta("last_gap")
			if err != nil {
				t.Fatal(err)
			}
			var g Gap
			if err := json.Unmarshal(js, &g); err != nil || g != tt.wantGap {
				t.Errorf("meta last_gap = %s (%v), want %+v", js, err, tt.wantGap)
			}
		})
	}
}

// TestGapNeverLost appends far past the bound with nothing acked and checks
// after every Append that each seq ever issued is either stored or inside a
// stored gap record's span, and that the gap counts add up to Stats.Dropped.
// In the first case gap records accumulate but fit; in the second the outbox
// fills with gap records until the oldest must be folded into new ones.
func TestGapNeverLost(t *testing.T) {
	tests := []struct {
		name     string
		maxBytes int64
		appends  int
		folds    bool // spans may then overlap
	}{
		{"gap records kept", 40000, 300, false},
		{"gap records folded", 2000, 300, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := open(t, tempPath(t), Options{MaxBytes: tt.maxBytes, Gap: encodeGap, NoSync: true})
			for i := 1; i <= tt.appends; i++ {
				batch := [][]byte{item(i, 37*(i%5)+50)}
				if i%7 == 0 {
					batch = append(batch, item(i, 400), item(i, 10))
				}
				if _, _, err := o.Append(batch...); err != nil {
					t.Fatalf("Append %d: %v", i, err)
				}
				checkGaps(t, o, tt.maxBytes, tt.folds)
			}
			es := mustPending(t, o, 0)
			var obs int
			for _, e := range es {
				if _, ok := decodeGap(t, e.Data); !ok {
					obs++
				}
			}
			t.Logf("%+v: %d observations, %d gap records", mustStats(t, o), obs, len(es)-obs)
			if mustStats(t, o).Dropped == 0 || obs == 0 {
				t.Fatal("expected both drops and kept observations")
			}
		})
	}
}

func checkGaps(t *testing.T, o *Outbox, maxBytes int64, overlapOK bool) {
	t.Helper()
	st := mustStats(t, o)
	if st.Bytes > maxBytes {
		t.Fatalf("Bytes = %d > %d", st.Bytes, maxBytes)
	}
	es := mustPending(t, o, 0)
	stored := map[uint64]bool{} // seq -> is an observation
	var gapList []Gap
	var gapCount uint64
	var total int64
	for _, e := range es {
		total += int64(len(e.Data))
		g, isGap := decodeGap(t, e.Data)
		stored[e.Seq] = !isGap
		if isGap {
			gapList = append(gapList, g)
			gapCount += uint64(g.Count)
		}
	}
	inSpan := map[uint64]bool{}
	for _, g := range gapList {
		for s := g.FirstSeq; s <= g.LastSeq; s++ {
			if stored[s] {
				t.Fatalf("gap %+v spans stored observation %d", g, s)
			}
			if inSpan[s] && !overlapOK {
				t.Fatalf("gap %+v overlaps another gap at %d", g, s)
			}
			inSpan[s] = true
		}
	}
	for s := uint64(1); s < st.NextSeq; s++ {
		if _, ok := stored[s]; !ok && !inSpan[s] {
			t.Fatalf("seq %d is neither stored nor in a gap", s)
		}
	}
	if gapCount != st.Dropped || total != st.Bytes || len(es) != st.Depth {
		t.Fatalf("gaps count %d, bytes %d, depth %d; Stats = %+v", gapCount, total, len(es), st)
	}
}

func TestTooLarge(t *testing.T) {
	tests := []struct {
		name  string
		batch [][]byte
	}{
		{"item over MaxBytes/4", [][]byte{item(1, 10), item(2, 251)}},
		{"batch over MaxBytes", [][]byte{item(1, 250), item(2, 250), item(3, 250), item(4, 250), item(5, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := open(t, tempPath(t), Options{MaxBytes: 1000, NoSync: true})
			if _, _, err := o.Append(tt.batch...); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Append = %v, want ErrTooLarge", err)
			}
			if st := mustStats(t, o); st.Depth != 0 || st.NextSeq != 1 {
				t.Errorf("refused batch left Stats %+v", st)
			}
		})
	}
}

func TestLocked(t *testing.T) {
	path := tempPath(t)
	open(t, path, Options{})
	start := time.Now()
	o2, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		o2.Close()
		t.Fatal("second Open of a held outbox succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "is locked by another process (is the agent running? use `evident-agent status`)") || !strings.Contains(err.Error(), path) {
		t.Errorf("second Open error = %v, want the locked error naming %s", err, path)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v with a 100ms timeout", d)
	}
}

func TestPendingLimits(t *testing.T) {
	o := open(t, tempPath(t), Options{NoSync: true})
	for i := 1; i <= 5; i++ {
		if _, _, err := o.Append(item(i, 10*i)); err != nil { // sizes 10, 20, 30, 40, 50
			t.Fatal(err)
		}
	}
	tests := []struct {
		name               string
		after              uint64
		maxBytes, maxCount int
		want               []uint64
	}{
		{"unlimited", 0, 0, 0, rangeSeqs(1, 5)},
		{"after", 3, 0, 0, []uint64{4, 5}},
		{"after last", 5, 0, 0, nil},
		{"after max", ^uint64(0), 0, 0, nil},
		{"count", 1, 0, 2, []uint64{2, 3}},
		{"bytes stop before exceeding", 0, 60, 0, []uint64{1, 2, 3}},
		{"bytes exact fit", 0, 59, 0, []uint64{1, 2}},
		{"first entry over bytes still returned", 4, 10, 0, []uint64{5}},
		{"both, count binds", 0, 1000, 3, []uint64{1, 2, 3}},
		{"both, bytes bind", 1, 50, 3, []uint64{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := o.Pending(tt.after, tt.maxBytes, tt.maxCount)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seqs(got), tt.want) {
				t.Errorf("Pending(%d, %d, %d) = %v, want %v", tt.after, tt.maxBytes, tt.maxCount, seqs(got), tt.want)
			}
		})
	}

	t.Run("returns copies", func(t *testing.T) {
		es := mustPending(t, o, 0)
		for _, e := range es {
			for i := range e.Data {
				e.Data[i] = 'X'
			}
		}
		for _, e := range mustPending(t, o, 0) {
			if want := item(int(e.Seq), 10*int(e.Seq)); !bytes.Equal(e.Data, want) {
				t.Errorf("entry %d = %q after mutating a returned copy, want %q", e.Seq, e.Data, want)
			}
		}
	})
}

func TestMeta(t *testing.T) {
	path := tempPath(t)
	o := open(t, path, Options{NoSync: true})
	tests := []struct {
		name    string
		key     string
		val     []byte
		wantErr bool
	}{
		{"caller key", "device_id", []byte("dev-1"), false},
		{"empty key", "", []byte("x"), true},
		{"reserved counter", "last_acked", []byte("x"), true},
		{"reserved gap", "last_gap", []byte("x"), true},
	}
	for _, tt := range tests {
		if err := o.SetMeta(tt.key, tt.val); (err != nil) != tt.wantErr {
			t.Errorf("%s: SetMeta(%q) = %v, want error %v", tt.name, tt.key, err, tt.wantErr)
		}
	}
	if v, err := o.Meta("absent"); v != nil || err != nil {
		t.Errorf("Meta(absent) = %q, %v; want nil, nil", v, err)
	}
	o.Close()
	o = open(t, path, Options{NoSync: true})
	if v, err := o.Meta("device_id"); string(v) != "dev-1" || err != nil {
		t.Errorf("Meta(device_id) after reopen = %q, %v", v, err)
	}
	if err := o.SetMeta("device_id", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := o.Meta("device_id"); v != nil || err != nil {
		t.Errorf("Meta after delete = %q, %v; want nil, nil", v, err)
	}
}

func TestClosed(t *testing.T) {
	o := open(t, tempPath(t), Options{NoSync: true})
	o.Close()
	ops := map[string]func() error{
		"Append":  func() error { _, _, err := o.Append([]byte("x")); return err },
		"Pending": func() error { _, err := o.Pending(0, 0, 0); return err },
		"Ack":     func() error { return o.Ack(0) },
		"Stats":   func() error { _, err := o.Stats(); return err },
		"SetMeta": func() error { return o.SetMeta("k", []byte("v")) },
		"Meta":    func() error { _, err := o.Meta("k"); return err },
		"Compact": o.Compact,
		"Close":   o.Close,
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestCompact(t *testing.T) {
	path := tempPath(t)
	o := open(t, path, Options{NoSync: true})
	if err := o.SetMeta("device_id", []byte("dev-1")); err != nil {
		t.Fatal(err)
	}

	// Nothing to reclaim in a fresh file: a no-op.
	before := mustStats(t, o).FileBytes
	if err := o.Compact(); err != nil {
		t.Fatal(err)
	}
	if got := mustStats(t, o).FileBytes; got != before {
		t.Errorf("Compact of a fresh file changed its size %d -> %d", before, got)
	}

	// 16 MiB through the outbox, acked as a sender would, leaving a tail.
	var last uint64
	for i := 0; i < 512; i++ {
		batch := make([][]byte, 8)
		for j := range batch {
			batch[j] = item(i*8+j, 4096)
		}
		var err error
		if _, last, err = o.Append(batch...); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Ack(last - 10); err != nil {
		t.Fatal(err)
	}
	want := mustPending(t, o, 0)
	big := mustStats(t, o)

	if err := o.Compact(); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	small := mustStats(t, o)
	t.Logf("file %d -> %d bytes for %d live bytes", big.FileBytes, small.FileBytes, small.Bytes)
	if small.FileBytes > big.FileBytes/4 {
		t.Errorf("Compact left the file at %d bytes (was %d)", small.FileBytes, big.FileBytes)
	}
	big.FileBytes, small.FileBytes = 0, 0
	if small != big {
		t.Errorf("Stats changed by Compact: %+v -> %+v", big, small)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("compaction file left behind: %v", err)
	}

	// The data, the meta and the sequence survive, on disk too.
	o.Close()
	o = open(t, path, Options{NoSync: true})
	got := mustPending(t, o, 0)
	if len(got) != len(want) {
		t.Fatalf("after Compact Pending = %v, want %v", seqs(got), seqs(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("entry %d changed by Compact", want[i].Seq)
		}
	}
	if v, _ := o.Meta("device_id"); string(v) != "dev-1" {
		t.Errorf("meta device_id after Compact = %q", v)
	}
	if first, _, err := o.Append([]byte("next")); err != nil || first != last+1 {
		t.Errorf("Append after Compact = %d, %v; want seq %d", first, err, last+1)
	}
}

func TestOpenRemovesStaleCompaction(t *testing.T) {
	path := tempPath(t)
	open(t, path, Options{}).Close()
	if err := os.WriteFile(path+".compact", []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	open(t, path, Options{})
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale compaction file survived Open: %v", err)
	}
}

// TestConcurrent runs appenders, an acker, readers and Compact together; run
// it with -race. Every seq must be issued once, and the counters must match
// the stored entries at the end.
func TestConcurrent(t *testing.T) {
	o := open(t, tempPath(t), Options{MaxBytes: 64 << 10, Gap: encodeGap, NoSync: true})
	var wg sync.WaitGroup
	issued := make(chan uint64, 4*200*3)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				first, last, err := o.Append(item(i, 100), item(i, 200), item(i, 300))
				if err != nil {
					t.Error(err)
					return
				}
				for s := first; s <= last; s++ {
					issued <- s
				}
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			es, err := o.Pending(0, 4096, 10)
			if err == nil && len(es) > 0 {
				err = o.Ack(es[len(es)-1].Seq)
			}
			if err == nil {
				_, err = o.Stats()
			}
			if err == nil {
				err = o.Compact()
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()
	close(issued)

	seen := map[uint64]bool{}
	for s := range issued {
		if seen[s] {
			t.Fatalf("seq %d issued twice", s)
		}
		seen[s] = true
	}
	st := mustStats(t, o)
	es := mustPending(t, o, 0)
	var total int64
	for _, e := range es {
		total += int64(len(e.Data))
	}
	if len(es) != st.Depth || total != st.Bytes || st.Bytes > 64<<10 {
		t.Errorf("%d entries, %d bytes stored; Stats = %+v", len(es), total, st)
	}
}

// TestCrash appends in a child process, SIGKILLs it mid-loop, and checks that
// every seq the child saw Append return is in the file with its data.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := tempPath(t)
	cmd := helperCommand(t, "append-loop", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reported [][3]uint64 // first, last, cycle
	lines := readLines(out)
	for line := range lines {
		var r [3]uint64
		if _, err := fmt.Sscan(line, &r[0], &r[1], &r[2]); err != nil {
			t.Fatalf("child printed %q: %v", line, err)
		}
		reported = append(reported, r)
		if len(reported) == 50 {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
				t.Fatal(err)
			}
		}
	}
	cmd.Wait() // killed: an error is expected
	if len(reported) < 50 {
		t.Fatalf("child reported only %d cycles before exiting", len(reported))
	}

	o := open(t, path, Options{})
	stored := map[uint64][]byte{}
	for _, e := range mustPending(t, o, 0) {
		stored[e.Seq] = e.Data
	}
	for _, r := range reported {
		for s := r[0]; s <= r[1]; s++ {
			if want := crashItem(r[2], s-r[0]); !bytes.Equal(stored[s], want) {
				t.Fatalf("seq %d (cycle %d) = %q after SIGKILL, want %q", s, r[2], stored[s], want)
			}
		}
	}
	last := reported[len(reported)-1][1]
	if st := mustStats(t, o); st.NextSeq <= last {
		t.Errorf("NextSeq %d after crash, but seq %d was issued", st.NextSeq, last)
	}
	if _, _, err := o.Append([]byte("after crash")); err != nil {
		t.Errorf("Append after crash: %v", err)
	}
	t.Logf("child reported %d cycles (up to seq %d) before being killed; %d entries stored", len(reported), last, len(stored))
}

func crashItem(cycle, i uint64) []byte {
	return fmt.Appendf(nil, "cycle %d observation %d %s", cycle, i, strings.Repeat("x", 1000))
}

// TestHelperProcess is not a test: it is the child process of TestCrash,
// selected by the OUTBOX_HELPER environment variable.
func TestHelperProcess(t *testing.T) {
	mode, path := os.Getenv("OUTBOX_HELPER"), os.Getenv("OUTBOX_HELPER_PATH")
	if mode == "" {
		t.Skip("helper process for TestCrash")
	}
	o, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// The parent kills us long before this bound; it only stops a runaway.
	for cycle := uint64(1); cycle < 100000; cycle++ {
		batch := make([][]byte, 8)
		for i := range batch {
			batch[i] = crashItem(cycle, uint64(i))
		}
		first, last, err := o.Append(batch...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: once this returns the parent can read it.
		fmt.Printf("%d %d %d\n", first, last, cycle)
	}
	os.Exit(0)
}

// TestSeqKeyBigEndian pins the on-disk key format tools rely on.
func TestSeqKeyBigEndian(t *testing.T) {
	if got := seqKey(0x0102030405060708); !bytes.Equal(got, []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("seqKey = %x", got)
	}
	if binary.BigEndian.Uint64(seqKey(42)) != 42 {
		t.Error("seqKey does not round-trip")
	}
}
