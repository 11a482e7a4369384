package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// exportAll returns a device's observations received in [from, to), as
// ObservationsForExport streams them.
func exportAll(t *testing.T, s store.Store, deviceID string, from, to time.Time) []store.ChainedObservation {
	t.Helper()
	var out []store.ChainedObservation
	err := s.ObservationsForExport(t.Context(), deviceID, from, to, func(c store.ChainedObservation) error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("ObservationsForExport(%s): %v", deviceID, err)
	}
	return out
}

// checkChain asserts a contiguous, correctly linked chain segment whose
// first link follows prev at index firstIdx-1, and returns its seqs.
func checkChain(t *testing.T, deviceID string, got []store.ChainedObservation, firstIdx uint64, prev []byte) []uint64 {
	t.Helper()
	var seqs []uint64
	for i, c := range got {
		if c.DeviceID != deviceID {
			t.Errorf("record %d: DeviceID = %q, want %q", i, c.DeviceID, deviceID)
		}
		if want := firstIdx + uint64(i); c.ChainIndex != want {
			t.Errorf("record %d (seq %d): ChainIndex = %d, want %d", i, c.Seq, c.ChainIndex, want)
		}
		if !bytes.Equal(c.PrevHash, prev) {
			t.Errorf("record %d (seq %d): PrevHash = %x, want %x (the previous link)", i, c.Seq, c.PrevHash, prev)
		}
		if want := store.ChainHash(prev, deviceID, c.ChainIndex, c.Observation); !bytes.Equal(c.ChainHash, want) {
			t.Errorf("record %d (seq %d): ChainHash = %x, recomputed %x", i, c.Seq, c.ChainHash, want)
		}
		prev = c.ChainHash
		seqs = append(seqs, c.Seq)
	}
	return seqs
}

func mustHead(t *testing.T, s store.Store, deviceID string) store.ChainLink {
	t.Helper()
	h, err := s.ChainHead(t.Context(), deviceID)
	if err != nil {
		t.Fatalf("ChainHead(%s): %v", deviceID, err)
	}
	return h
}

func testChain(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	mustEnroll(t, s, device("dev-b", "machine-b"))
	all := func(id string) []store.ChainedObservation {
		return exportAll(t, s, id, t0.Add(-time.Hour), t0.Add(1000*time.Hour))
	}

	if h := mustHead(t, s, "dev-a"); h.Index != 0 || !bytes.Equal(h.Hash, store.GenesisHash) {
		t.Errorf("ChainHead before ingest = %d/%x, want 0/genesis", h.Index, h.Hash)
	}
	if h := mustHead(t, s, "no-such-device"); h.Index != 0 {
		t.Errorf("ChainHead(unknown) = %d, want 0", h.Index)
	}

	// Links: two batches chain on from each other, starting at genesis.
	mustIngest(t, s, "dev-a", seqs(1, 5, "os"), at(time.Hour), 5)
	mustIngest(t, s, "dev-a", seqs(6, 8, "disk"), at(2*time.Hour), 3)
	got := all("dev-a")
	if s := checkChain(t, "dev-a", got, 1, store.GenesisHash); !slices.Equal(s, []uint64{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("chain seqs = %v, want 1..8", s)
	}
	// Records round-trip every field: the hash covers what is read back.
	if d := diff(got[2].Observation, withReceived(obs(3, "os"), at(time.Hour))); d != "" {
		t.Errorf("exported seq 3:\n%s", d)
	}
	head := mustHead(t, s, "dev-a")
	if head.Index != 8 || !bytes.Equal(head.Hash, got[7].ChainHash) {
		t.Errorf("ChainHead = %d/%x, want 8/%x", head.Index, head.Hash, got[7].ChainHash)
	}

	// Duplicates (a resend, a duplicate within a batch) do not advance it,
	// and a changed resend does not rewrite a link.
	changed := obs(3, "os")
	changed.Payload = json.RawMessage(`{"tampered":true}`)
	mustIngest(t, s, "dev-a", append(seqs(1, 8, "os"), changed), at(3*time.Hour), 0)
	if h := mustHead(t, s, "dev-a"); h.Index != 8 || !bytes.Equal(h.Hash, head.Hash) {
		t.Errorf("ChainHead after resend = %d/%x, want unchanged 8/%x", h.Index, h.Hash, head.Hash)
	}
	mustIngest(t, s, "dev-a", []store.Observation{obs(12, "os"), obs(12, "os")}, at(4*time.Hour), 1)

	// Out of order seqs chain in arrival order: 12 first, then 10, 11.
	mustIngest(t, s, "dev-a", []store.Observation{obs(10, "os"), obs(9, "os")}, at(5*time.Hour), 2)
	mustIngest(t, s, "dev-a", []store.Observation{obs(11, "os"), obs(12, "os")}, at(6*time.Hour), 1)
	got = all("dev-a")
	if s := checkChain(t, "dev-a", got, 1, store.GenesisHash); !slices.Equal(s, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 12, 10, 9, 11}) {
		t.Errorf("chain seqs = %v, want arrival order 1..8, 12, 10, 9, 11", s)
	}
	if h := mustHead(t, s, "dev-a"); h.Index != 12 || !bytes.Equal(h.Hash, got[11].ChainHash) {
		t.Errorf("ChainHead = %d, want 12 and the last link's hash", h.Index)
	}

	// Two devices have independent chains: dev-b starts at genesis, and
	// the same seq and content hashes differently (the device id is hashed).
	mustIngest(t, s, "dev-b", seqs(1, 2, "os"), at(time.Hour), 2)
	gotB := all("dev-b")
	checkChain(t, "dev-b", gotB, 1, store.GenesisHash)
	if len(gotB) != 2 || bytes.Equal(gotB[0].ChainHash, got[0].ChainHash) {
		t.Errorf("dev-b chain = %d links, first hash equal to dev-a's: %v", len(gotB), len(gotB) > 0 && bytes.Equal(gotB[0].ChainHash, got[0].ChainHash))
	}
	if h := mustHead(t, s, "dev-a"); h.Index != 12 {
		t.Errorf("dev-a ChainHead after dev-b ingest = %d, want 12", h.Index)
	}

	// A period excerpt is the contiguous segment received in the window,
	// and its first record carries the link before it.
	ex := exportAll(t, s, "dev-a", at(2*time.Hour), at(5*time.Hour))
	if s := checkChain(t, "dev-a", ex, 6, got[4].ChainHash); !slices.Equal(s, []uint64{6, 7, 8, 12}) {
		t.Errorf("excerpt [2h,5h) seqs = %v, want 6, 7, 8, 12", s)
	}
	if ex := exportAll(t, s, "dev-a", at(100*time.Hour), at(200*time.Hour)); len(ex) != 0 {
		t.Errorf("excerpt of an empty window = %d records, want 0", len(ex))
	}

	// An error from fn stops the walk and is returned.
	stop := fmt.Errorf("stop")
	calls := 0
	err := s.ObservationsForExport(t.Context(), "dev-a", t0, at(1000*time.Hour), func(store.ChainedObservation) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Errorf("ObservationsForExport with a failing fn = %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func withReceived(o store.Observation, r time.Time) store.Observation {
	o.ReceivedAt = r
	return o
}
