// Package storetest is the conformance suite every store implementation
// runs: each implementation's tests call Run with a constructor for a fresh,
// empty store, so SQLite and PostgreSQL are held to the same behaviour
// (idempotent ingest, interval states, enrollment rules).
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/devices"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
)

// Run runs the conformance suite. newStore must return a new, empty store
// each time it is called; the suite closes it when the subtest ends.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	t.Run("EnrollSecrets", func(t *testing.T) { testEnrollSecrets(t, open) })
	t.Run("EnrollSecretConflicts", func(t *testing.T) { testEnrollSecretConflicts(t, open) })
	t.Run("Devices", func(t *testing.T) { testDevices(t, open) })
	t.Run("Reenroll", func(t *testing.T) { testReenroll(t, open) })
	t.Run("DeviceFacts", func(t *testing.T) { testDeviceFacts(t, open) })
	t.Run("Ingest", func(t *testing.T) { testIngest(t, open) })
	t.Run("IngestRoundTrip", func(t *testing.T) { testIngestRoundTrip(t, open) })
	t.Run("IngestFailures", func(t *testing.T) { testIngestFailures(t, open) })
	t.Run("IngestScored", func(t *testing.T) { testIngestScored(t, open) })
	t.Run("IngestScoredBesideEvaluation", func(t *testing.T) { testIngestScoredBesideEvaluation(t, open) })
	t.Run("ScoredBesideRecorded", func(t *testing.T) { testScoredBesideRecorded(t, open) })
	t.Run("LatestHistory", func(t *testing.T) { testLatestHistory(t, open) })
	t.Run("ApplyStates", func(t *testing.T) { testApplyStates(t, open) })
	t.Run("ApplyStatesLate", func(t *testing.T) { testApplyStatesLate(t, open) })
	t.Run("Posture", func(t *testing.T) { testPosture(t, open) })
	t.Run("ConcurrentIngest", func(t *testing.T) { testConcurrentIngest(t, open) })
	t.Run("TPMEnrollment", func(t *testing.T) { testTPMEnrollment(t, open) })
	t.Run("SingleUse", func(t *testing.T) { testSingleUse(t, open) })
	t.Run("Attestations", func(t *testing.T) { testAttestations(t, open) })
	t.Run("Chain", func(t *testing.T) { testChain(t, open) })
	t.Run("Web", func(t *testing.T) { testWeb(t, open) })
	t.Run("Periods", func(t *testing.T) { testPeriods(t, open) })
	t.Run("InventoryWaivers", func(t *testing.T) { testInventoryWaivers(t, open) })
	t.Run("Leases", func(t *testing.T) { testLeases(t, open) })
	t.Run("Credentials", func(t *testing.T) { testCredentials(t, open) })
	t.Run("Commands", func(t *testing.T) { testCommands(t, open) })
	t.Run("Alerts", func(t *testing.T) { testAlerts(t, open) })
	t.Run("SecretList", func(t *testing.T) { testSecretList(t, open) })
	t.Run("Prune", func(t *testing.T) { testPrune(t, open) })
	t.Run("ConcurrentSecretUse", func(t *testing.T) { testConcurrentSecretUse(t, open) })
	t.Run("ConcurrentEvaluations", func(t *testing.T) { testConcurrentEvaluations(t, open) })
}

// t0 is the suite's fixed clock; nothing here reads the wall clock.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ptr[T any](v T) *T { return &v }

// --- enrollment ---

func testEnrollSecrets(t *testing.T, open func(*testing.T) store.Store) {
	type use struct {
		now     time.Time
		wantErr error // nil or store.ErrNotFound
		uses    int   // Uses reported on success
	}
	tests := []struct {
		name   string
		secret store.EnrollSecret
		hash   []byte // hash presented; the secret's own when nil
		uses   []use
	}{
		{
			name:   "reusable counts uses",
			secret: store.EnrollSecret{Label: "fleet", CreatedAt: t0},
			uses: []use{
				{now: at(time.Minute), uses: 1},
				{now: at(time.Hour), uses: 2},
				{now: at(1000 * time.Hour), uses: 3},
			},
		},
		{
			name:   "unknown hash",
			secret: store.EnrollSecret{CreatedAt: t0},
			hash:   []byte("no-such-hash"),
			uses:   []use{{now: at(time.Minute), wantErr: store.ErrNotFound}},
		},
		{
			name:   "before expiry",
			secret: store.EnrollSecret{CreatedAt: t0, ExpiresAt: ptr(at(time.Hour))},
			uses:   []use{{now: at(time.Hour - time.Nanosecond), uses: 1}},
		},
		{
			name:   "expired",
			secret: store.EnrollSecret{CreatedAt: t0, ExpiresAt: ptr(at(time.Hour))},
			uses: []use{
				{now: at(2 * time.Hour), wantErr: store.ErrNotFound},
				{now: at(3 * time.Hour), wantErr: store.ErrNotFound},
			},
		},
		{
			// ExpiresAt is exclusive: the secret is dead at that instant.
			name:   "at expiry instant",
			secret: store.EnrollSecret{CreatedAt: t0, ExpiresAt: ptr(at(time.Hour))},
			uses:   []use{{now: at(time.Hour), wantErr: store.ErrNotFound}},
		},
		{
			name:   "single use works once",
			secret: store.EnrollSecret{CreatedAt: t0, SingleUse: true},
			uses: []use{
				{now: at(time.Minute), uses: 1},
				{now: at(2 * time.Minute), wantErr: store.ErrNotFound},
				{now: at(3 * time.Minute), wantErr: store.ErrNotFound},
			},
		},
		{
			name:   "single use expired before use",
			secret: store.EnrollSecret{CreatedAt: t0, SingleUse: true, ExpiresAt: ptr(at(time.Minute))},
			uses:   []use{{now: at(time.Hour), wantErr: store.ErrNotFound}},
		},
		{
			name:   "revoked",
			secret: store.EnrollSecret{CreatedAt: t0, RevokedAt: ptr(at(time.Second))},
			uses: []use{
				{now: at(time.Minute), wantErr: store.ErrNotFound},
			},
		},
	}
	s := open(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			sec := tc.secret
			sec.ID = fmt.Sprintf("secret-%d", i)
			sec.Hash = []byte(fmt.Sprintf("hash-%d", i))
			if err := s.CreateEnrollSecret(ctx, sec); err != nil {
				t.Fatalf("CreateEnrollSecret: %v", err)
			}
			hash := tc.hash
			if hash == nil {
				hash = sec.Hash
			}
			for j, u := range tc.uses {
				got, err := s.UseEnrollSecret(ctx, hash, u.now)
				if u.wantErr != nil {
					if !errors.Is(err, u.wantErr) {
						t.Fatalf("use %d at %v: err = %v, want %v", j, u.now, err, u.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("use %d at %v: %v", j, u.now, err)
				}
				want := sec
				want.Uses = u.uses
				if d := diff(got, want); d != "" {
					t.Errorf("use %d: secret mismatch:\n%s", j, d)
				}
			}
		})
	}
}

func testEnrollSecretConflicts(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	base := store.EnrollSecret{ID: "s1", Hash: []byte("h1"), CreatedAt: t0}
	if err := s.CreateEnrollSecret(ctx, base); err != nil {
		t.Fatalf("CreateEnrollSecret: %v", err)
	}
	for _, tc := range []struct {
		name string
		sec  store.EnrollSecret
	}{
		{"same hash", store.EnrollSecret{ID: "s2", Hash: []byte("h1"), CreatedAt: t0}},
		{"same id", store.EnrollSecret{ID: "s1", Hash: []byte("h2"), CreatedAt: t0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.CreateEnrollSecret(ctx, tc.sec); err == nil {
				t.Errorf("CreateEnrollSecret(%s, %q) succeeded, want an error", tc.sec.ID, tc.sec.Hash)
			}
		})
	}
	// The original is untouched.
	got, err := s.UseEnrollSecret(ctx, []byte("h1"), at(time.Minute))
	if err != nil {
		t.Fatalf("UseEnrollSecret: %v", err)
	}
	if got.ID != "s1" || got.Uses != 1 {
		t.Errorf("UseEnrollSecret = %s uses %d, want s1 uses 1", got.ID, got.Uses)
	}
}

// --- devices ---

func device(id, machineID string) store.Device {
	return store.Device{
		ID:           id,
		Hostname:     "host-" + id,
		GOOS:         "linux",
		GOARCH:       "arm64",
		OSVersion:    "Ubuntu 24.04",
		MachineID:    machineID,
		SerialNumber: "SN-" + id,
		AgentVersion: "1.2.3",
		SecretID:     "secret-1",
		EnrolledAt:   t0,
	}
}

// testDeviceFacts: a connected agent's facts refresh the device's record;
// an empty fact keeps the stored one; nothing else changes.
func testDeviceFacts(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()
	d := device("dev-f", "m-f")
	d.SerialNumber = ""
	mustEnroll(t, s, d)
	for _, tc := range []struct {
		name    string
		f       store.DeviceFacts
		changed bool
		want    store.DeviceFacts
	}{
		{"a serial number read after enrollment", store.DeviceFacts{SerialNumber: "PF2ABC12"}, true,
			store.DeviceFacts{Hostname: "host-dev-f", OSVersion: "Ubuntu 24.04", SerialNumber: "PF2ABC12", AgentVersion: "1.2.3"}},
		{"the same again", store.DeviceFacts{Hostname: "host-dev-f", SerialNumber: "PF2ABC12", AgentVersion: "1.2.3"}, false,
			store.DeviceFacts{Hostname: "host-dev-f", OSVersion: "Ubuntu 24.04", SerialNumber: "PF2ABC12", AgentVersion: "1.2.3"}},
		{"renamed, upgraded", store.DeviceFacts{Hostname: "laptop-ada", OSVersion: "Ubuntu 26.04", AgentVersion: "1.3.0"}, true,
			store.DeviceFacts{Hostname: "laptop-ada", OSVersion: "Ubuntu 26.04", SerialNumber: "PF2ABC12", AgentVersion: "1.3.0"}},
		{"nothing said", store.DeviceFacts{}, false,
			store.DeviceFacts{Hostname: "laptop-ada", OSVersion: "Ubuntu 26.04", SerialNumber: "PF2ABC12", AgentVersion: "1.3.0"}},
	} {
		changed, err := s.UpdateDeviceFacts(ctx, "dev-f", tc.f)
		if err != nil || changed != tc.changed {
			t.Errorf("%s: changed %v, %v; want %v", tc.name, changed, err, tc.changed)
		}
		got, err := s.Device(ctx, "dev-f")
		if err != nil {
			t.Fatal(err)
		}
		if f := (store.DeviceFacts{Hostname: got.Hostname, OSVersion: got.OSVersion, SerialNumber: got.SerialNumber, AgentVersion: got.AgentVersion}); f != tc.want {
			t.Errorf("%s: device facts %+v, want %+v", tc.name, f, tc.want)
		}
		if got.MachineID != "m-f" || got.GOOS != "linux" || !got.EnrolledAt.Equal(t0) {
			t.Errorf("%s: identity changed: %+v", tc.name, got)
		}
	}
	if _, err := s.UpdateDeviceFacts(ctx, "dev-none", store.DeviceFacts{Hostname: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateDeviceFacts of an unknown device: %v, want ErrNotFound", err)
	}
}

// mustEnroll enrolls d as the server does: linked by package devices, then
// stored.
func mustEnroll(t *testing.T, s store.Store, d store.Device) store.Device {
	t.Helper()
	got, err := devices.Enroll(t.Context(), s, d)
	if err != nil {
		t.Fatalf("EnrollDevice(%s): %v", d.ID, err)
	}
	return got
}

func mustDevice(t *testing.T, s store.Store, id string) store.Device {
	t.Helper()
	d, err := s.Device(t.Context(), id)
	if err != nil {
		t.Fatalf("Device(%s): %v", id, err)
	}
	return d
}

func testDevices(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)

	if got, err := s.Devices(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Devices on empty store = %v, %v; want none", got, err)
	}

	want := device("dev-a", "machine-a")
	want.EnrolledAt = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 5*3600))
	got := mustEnroll(t, s, want)
	if got.ID != "dev-a" || got.Reenrolled != 0 {
		t.Errorf("EnrollDevice = id %q reenrolled %d, want dev-a, 0", got.ID, got.Reenrolled)
	}
	stored := mustDevice(t, s, "dev-a")
	if d := diff(stored, want); d != "" {
		t.Errorf("Device round trip:\n%s", d)
	}
	checkUTC(t, "EnrolledAt", stored.EnrolledAt)

	if _, err := s.Device(ctx, "no-such-device"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device(unknown) err = %v, want ErrNotFound", err)
	}

	// An id already taken by another machine is refused, not overwritten.
	if _, err := s.EnrollDevice(ctx, device("dev-a", "machine-other")); err == nil {
		t.Errorf("EnrollDevice with a taken id and a new machine id succeeded, want an error")
	}
	if d := diff(mustDevice(t, s, "dev-a"), want); d != "" {
		t.Errorf("dev-a changed by a refused enrollment:\n%s", d)
	}

	// Empty machine ids never link devices together.
	for _, id := range []string{"dev-n1", "dev-n2", "dev-n3"} {
		got := mustEnroll(t, s, device(id, ""))
		if got.ID != id || got.Reenrolled != 0 {
			t.Errorf("EnrollDevice(%s, no machine id) = id %q reenrolled %d; want a new device", id, got.ID, got.Reenrolled)
		}
	}

	all, err := s.Devices(ctx)
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	var ids []string
	for _, d := range all {
		ids = append(ids, d.ID)
		if d.ID == "dev-a" {
			if df := diff(d, want); df != "" {
				t.Errorf("Devices entry for dev-a:\n%s", df)
			}
		}
	}
	sort.Strings(ids)
	if wantIDs := []string{"dev-a", "dev-n1", "dev-n2", "dev-n3"}; !reflect.DeepEqual(ids, wantIDs) {
		t.Errorf("Devices ids = %v, want %v", ids, wantIDs)
	}
}

// A machine id is asserted by the client: enrolling with one already known
// links the new device to the old (so a re-imaged machine's history is
// recognised) but never hands out the old identity, and the new device
// starts its own seq space.
func testReenroll(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	orig := mustEnroll(t, s, device("dev-1", "machine-1"))
	mustEnroll(t, s, device("dev-other", "machine-2"))
	if _, err := s.Ingest(ctx, "dev-1", []store.Observation{obs(1, "os"), obs(2, "os")}, at(time.Hour)); err != nil {
		t.Fatalf("Ingest: %v", err)
	}

	prev := orig.ID
	for n := 1; n <= 2; n++ {
		again := device(fmt.Sprintf("dev-new-%d", n), "machine-1")
		again.Hostname = fmt.Sprintf("renamed-%d", n)
		again.EnrolledAt = at(time.Duration(n) * 24 * time.Hour)
		again.PreviousID, again.Reenrolled = "forged", 99 // set by the link rule, not the caller
		got, err := devices.Enroll(ctx, s, again)
		if err != nil {
			t.Fatalf("re-enroll %d: %v", n, err)
		}
		if got.ID != again.ID || got.PreviousID != prev || got.Reenrolled != n {
			t.Errorf("re-enroll %d: id %q previous %q reenrolled %d; want %q linked to %q, %d",
				n, got.ID, got.PreviousID, got.Reenrolled, again.ID, prev, n)
		}
		if d := diff(got, mustDevice(t, s, again.ID)); d != "" {
			t.Errorf("re-enroll %d: returned device differs from stored:\n%s", n, d)
		}
		// The new device's seq 1 is new evidence, not a duplicate of the
		// old device's seq 1.
		if k, err := s.Ingest(ctx, again.ID, []store.Observation{obs(1, "os")}, at(48*time.Hour)); err != nil || k != 1 {
			t.Errorf("re-enroll %d: first observation of the new device stored %d, err %v; want 1", n, k, err)
		}
		prev = again.ID
	}
	if d := mustDevice(t, s, orig.ID); d.Hostname != orig.Hostname || d.PreviousID != "" || d.Reenrolled != 0 {
		t.Errorf("original device changed by re-enrollment: %+v", d)
	}
	if c, err := s.Counts(ctx, orig.ID); err != nil || c.Total != 2 {
		t.Errorf("original device's evidence: %+v, %v; want its 2 observations kept", c, err)
	}
	if d := mustDevice(t, s, "dev-other"); d.Reenrolled != 0 || d.PreviousID != "" {
		t.Errorf("unrelated device changed: %+v", d)
	}
	all, err := s.Devices(ctx)
	if err != nil || len(all) != 4 {
		t.Errorf("Devices after two re-enrollments = %d (%v), want 4", len(all), err)
	}
}

// --- evidence ---

// obs returns a distinctive observation for seq: every field set, payload
// and sources unique to seq.
func obs(seq uint64, collector string) store.Observation {
	return store.Observation{
		Seq:           seq,
		Collector:     collector,
		CollectedAt:   at(time.Duration(seq)*time.Minute + time.Duration(seq)), // odd nanoseconds
		ClockSkew:     seq%3 == 0,
		Status:        "ok",
		Error:         fmt.Sprintf("err-%d", seq%2),
		ParserVersion: int(seq % 4),
		Payload:       json.RawMessage(fmt.Sprintf(`{"seq":%d,"collector":%q}`, seq, collector)),
		Sources:       json.RawMessage(fmt.Sprintf(`["/etc/os-release#%d"]`, seq)),
		DurationMS:    int(seq * 7),
	}
}

func seqs(from, to uint64, collector string) []store.Observation {
	var out []store.Observation
	for i := from; i <= to; i++ {
		out = append(out, obs(i, collector))
	}
	return out
}

func mustIngest(t *testing.T, s store.Store, deviceID string, o []store.Observation, receivedAt time.Time, wantNew int) {
	t.Helper()
	n, err := s.Ingest(t.Context(), deviceID, o, receivedAt)
	if err != nil {
		t.Fatalf("Ingest(%s, %d obs): %v", deviceID, len(o), err)
	}
	if n != wantNew {
		t.Errorf("Ingest(%s, %d obs) = %d new, want %d", deviceID, len(o), n, wantNew)
	}
}

func mustCounts(t *testing.T, s store.Store, deviceID string) store.ObservationCounts {
	t.Helper()
	c, err := s.Counts(t.Context(), deviceID)
	if err != nil {
		t.Fatalf("Counts(%s): %v", deviceID, err)
	}
	return c
}

func testIngest(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	mustEnroll(t, s, device("dev-b", "machine-b"))

	if c := mustCounts(t, s, "dev-a"); c.Total != 0 {
		t.Errorf("Counts before ingest = %+v, want zero", c)
	}
	if d := mustDevice(t, s, "dev-a"); d.LastSeenAt != nil {
		t.Errorf("LastSeenAt before ingest = %v, want nil", d.LastSeenAt)
	}

	steps := []struct {
		name     string
		device   string
		obs      []store.Observation
		received time.Time
		wantNew  int
	}{
		{"first batch 1..10", "dev-a", seqs(1, 10, "os"), at(time.Hour), 10},
		{"overlap 5..15", "dev-a", seqs(5, 15, "os"), at(2 * time.Hour), 5},
		{"full resend 1..15", "dev-a", seqs(1, 15, "os"), at(3 * time.Hour), 0},
		{"duplicate within batch", "dev-a", []store.Observation{obs(16, "os"), obs(16, "os"), obs(15, "os")}, at(4 * time.Hour), 1},
		{"empty batch", "dev-a", nil, at(5 * time.Hour), 0},
		{"other device same seq", "dev-b", seqs(1, 1, "os"), at(6 * time.Hour), 1},
	}
	for _, st := range steps {
		mustIngest(t, s, st.device, st.obs, st.received, st.wantNew)
	}

	// A resend with changed content never replaces what was stored first.
	changed := obs(3, "os")
	changed.Payload = json.RawMessage(`{"tampered":true}`)
	changed.Collector = "disk"
	mustIngest(t, s, "dev-a", []store.Observation{changed}, at(7*time.Hour), 0)
	hist, err := s.History(ctx, "dev-a", "os", 100)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(hist) != 16 {
		t.Errorf("History(os) = %d observations, want 16 (each seq exactly once)", len(hist))
	}
	seen := map[uint64]int{}
	for _, o := range hist {
		seen[o.Seq]++
		if o.Seq == 3 && !bytes.Equal(o.Payload, obs(3, "os").Payload) {
			t.Errorf("seq 3 payload = %s after a changed resend, want the original", o.Payload)
		}
	}
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("seq %d stored %d times", seq, n)
		}
	}
	if h, err := s.History(ctx, "dev-a", "disk", 10); err != nil || len(h) != 0 {
		t.Errorf("History(disk) = %d, %v; a rejected duplicate must not appear under another collector", len(h), err)
	}

	want := store.ObservationCounts{Total: 16, MinSeq: 1, MaxSeq: 16, First: obs(1, "os").CollectedAt, Last: obs(16, "os").CollectedAt}
	if d := diff(mustCounts(t, s, "dev-a"), want); d != "" {
		t.Errorf("Counts(dev-a):\n%s", d)
	}
	wantB := store.ObservationCounts{Total: 1, MinSeq: 1, MaxSeq: 1, First: obs(1, "os").CollectedAt, Last: obs(1, "os").CollectedAt}
	if d := diff(mustCounts(t, s, "dev-b"), wantB); d != "" {
		t.Errorf("Counts(dev-b):\n%s", d)
	}

	// LastSeenAt follows the latest ingest of that device only.
	if d := mustDevice(t, s, "dev-a"); d.LastSeenAt == nil || !d.LastSeenAt.Equal(at(7*time.Hour)) {
		t.Errorf("dev-a LastSeenAt = %v, want %v", d.LastSeenAt, at(7*time.Hour))
	} else {
		checkUTC(t, "LastSeenAt", *d.LastSeenAt)
	}
	if d := mustDevice(t, s, "dev-b"); d.LastSeenAt == nil || !d.LastSeenAt.Equal(at(6*time.Hour)) {
		t.Errorf("dev-b LastSeenAt = %v, want %v", d.LastSeenAt, at(6*time.Hour))
	}
}

func testIngestRoundTrip(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	mustEnroll(t, s, device("dev-a", "machine-a"))

	east := time.FixedZone("UTC+9", 9*3600)
	west := time.FixedZone("UTC-7", -7*3600)
	received := time.Date(2026, 1, 2, 12, 0, 0, 999999999, west)

	big := make([]byte, 0, 64<<10)
	big = append(big, `{"blob":"`...)
	for i := 0; len(big) < 60<<10; i++ {
		big = append(big, byte('a'+i%26))
	}
	big = append(big, `"}`...)

	cases := []store.Observation{
		obs(1, "os"),
		{
			Seq: 2, Collector: "disk", Status: "error", Error: "permission denied: ünïcode ✓",
			CollectedAt: time.Date(2026, 1, 2, 20, 0, 0, 1, east), ClockSkew: true,
			ParserVersion: 9, DurationMS: 12345,
			Payload: json.RawMessage(`{"a":[1,2,3],"nested":{"x":"\u0000"}}`),
			Sources: json.RawMessage(`[]`),
		},
		{Seq: 3, Collector: "big", Status: "ok", CollectedAt: at(time.Second), Payload: big, Sources: json.RawMessage(`null`)},
		{Seq: 4, Collector: "nopayload", Status: "skipped", CollectedAt: at(2 * time.Second)},
		{Seq: 1<<62 + 7, Collector: "huge-seq", Status: "ok", CollectedAt: at(3 * time.Second), Payload: json.RawMessage(`1`)},
	}
	mustIngest(t, s, "dev-a", cases, received, len(cases))

	latest, err := s.Latest(ctx, "dev-a")
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	if len(latest) != len(cases) {
		t.Errorf("Latest = %d collectors, want %d", len(latest), len(cases))
	}
	for _, want := range cases {
		got, ok := latest[want.Collector]
		if !ok {
			t.Errorf("Latest missing collector %q", want.Collector)
			continue
		}
		want.ReceivedAt = received
		if d := diff(got, want); d != "" {
			t.Errorf("seq %d round trip:\n%s", want.Seq, d)
		}
		checkUTC(t, "CollectedAt", got.CollectedAt)
		checkUTC(t, "ReceivedAt", got.ReceivedAt)
		if got.CollectedAt.Nanosecond() != want.CollectedAt.Nanosecond() {
			t.Errorf("seq %d: CollectedAt nanoseconds = %d, want %d", want.Seq, got.CollectedAt.Nanosecond(), want.CollectedAt.Nanosecond())
		}
	}
	c := mustCounts(t, s, "dev-a")
	if c.MaxSeq != 1<<62+7 || c.MinSeq != 1 || c.Total != len(cases) {
		t.Errorf("Counts = %+v, want total %d seqs 1..%d", c, len(cases), uint64(1<<62+7))
	}
}

func testIngestFailures(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	if n, err := s.Ingest(ctx, "no-such-device", seqs(1, 3, "os"), t0); err == nil {
		t.Errorf("Ingest for an unenrolled device = %d, nil; want an error", n)
	}
	if c := mustCounts(t, s, "no-such-device"); c.Total != 0 {
		t.Errorf("Counts after refused ingest = %+v, want zero", c)
	}
	if got, err := s.Latest(ctx, "no-such-device"); err != nil || len(got) != 0 {
		t.Errorf("Latest(unknown) = %v, %v; want empty", got, err)
	}
	if got, err := s.History(ctx, "no-such-device", "os", 10); err != nil || len(got) != 0 {
		t.Errorf("History(unknown) = %v, %v; want empty", got, err)
	}
	// A cancelled context stores nothing.
	mustEnroll(t, s, device("dev-a", "machine-a"))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Ingest(cctx, "dev-a", seqs(1, 3, "os"), t0); err == nil {
		t.Errorf("Ingest with a cancelled context succeeded, want an error")
	}
	if c := mustCounts(t, s, "dev-a"); c.Total != 0 {
		t.Errorf("Counts after cancelled ingest = %+v, want zero", c)
	}
}

func testLatestHistory(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	mustEnroll(t, s, device("dev-b", "machine-b"))

	// Out of order on purpose, and seq 5's clock is behind seq 3's: Latest
	// follows seq, not arrival or collected_at.
	five := obs(5, "os")
	five.CollectedAt = obs(1, "os").CollectedAt
	mustIngest(t, s, "dev-a", []store.Observation{five, obs(2, "disk")}, at(time.Hour), 2)
	mustIngest(t, s, "dev-a", []store.Observation{obs(1, "os"), obs(3, "os"), obs(4, "disk")}, at(2*time.Hour), 3)
	mustIngest(t, s, "dev-b", []store.Observation{obs(9, "os"), obs(10, "fw")}, at(3*time.Hour), 2)

	latest, err := s.Latest(ctx, "dev-a")
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	gotLatest := map[string]uint64{}
	for k, o := range latest {
		gotLatest[k] = o.Seq
		if o.Collector != k {
			t.Errorf("Latest[%q].Collector = %q", k, o.Collector)
		}
	}
	if want := map[string]uint64{"os": 5, "disk": 4}; !reflect.DeepEqual(gotLatest, want) {
		t.Errorf("Latest(dev-a) seqs = %v, want %v", gotLatest, want)
	}
	if !bytes.Equal(latest["os"].Payload, five.Payload) {
		t.Errorf("Latest[os] payload = %s, want %s", latest["os"].Payload, five.Payload)
	}

	tests := []struct {
		device, collector string
		limit             int
		want              []uint64
	}{
		{"dev-a", "os", 10, []uint64{5, 3, 1}},
		{"dev-a", "os", 3, []uint64{5, 3, 1}},
		{"dev-a", "os", 2, []uint64{5, 3}},
		{"dev-a", "os", 1, []uint64{5}},
		{"dev-a", "disk", 10, []uint64{4, 2}},
		{"dev-a", "fw", 10, nil},
		{"dev-b", "os", 10, []uint64{9}},
		{"dev-b", "disk", 10, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s/limit%d", tc.device, tc.collector, tc.limit), func(t *testing.T) {
			h, err := s.History(ctx, tc.device, tc.collector, tc.limit)
			if err != nil {
				t.Fatalf("History: %v", err)
			}
			var got []uint64
			for _, o := range h {
				got = append(got, o.Seq)
				if o.Collector != tc.collector {
					t.Errorf("seq %d has collector %q", o.Seq, o.Collector)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("History = %v, want %v", got, tc.want)
			}
		})
	}
}

// --- scores ---

func mustApply(t *testing.T, s store.Store, deviceID string, when time.Time, next ...store.ControlState) {
	t.Helper()
	if err := states.Record(t.Context(), s, deviceID, next, nil, when); err != nil {
		t.Fatalf("states.Record(%s, %v): %v", deviceID, when, err)
	}
}

func byControl(sts []store.ControlState) map[string][]store.ControlState {
	m := map[string][]store.ControlState{}
	for _, st := range sts {
		m[st.ControlID] = append(m[st.ControlID], st)
	}
	return m
}

func mustHistory(t *testing.T, s store.Store, deviceID string) map[string][]store.ControlState {
	t.Helper()
	h, err := s.StateHistory(t.Context(), deviceID)
	if err != nil {
		t.Fatalf("StateHistory(%s): %v", deviceID, err)
	}
	checkIntervals(t, h)
	ids := map[int64]bool{}
	for i := range h {
		if h[i].ID == 0 || ids[h[i].ID] {
			t.Errorf("StateHistory(%s): interval %s since %v has id %d, want a distinct non-zero id", deviceID, h[i].ControlID, h[i].Since, h[i].ID)
		}
		ids[h[i].ID] = true
		h[i].ID = 0
	}
	return byControl(h)
}

func mustCurrent(t *testing.T, s store.Store, deviceID string) map[string]store.ControlState {
	t.Helper()
	cur, err := s.CurrentStates(t.Context(), deviceID)
	if err != nil {
		t.Fatalf("CurrentStates(%s): %v", deviceID, err)
	}
	m := map[string]store.ControlState{}
	for _, st := range cur {
		if st.Until != nil {
			t.Errorf("CurrentStates returned closed interval %s %s until %v", st.ControlID, st.Status, *st.Until)
		}
		if _, dup := m[st.ControlID]; dup {
			t.Errorf("CurrentStates returned two open intervals for %s", st.ControlID)
		}
		// The id is the store's: it must name the interval, its value is
		// not compared.
		if st.ID == 0 {
			t.Errorf("CurrentStates returned %s without an interval id", st.ControlID)
		}
		st.ID = 0
		m[st.ControlID] = st
	}
	return m
}

// checkIntervals checks the invariants of a device's state history: per
// control, intervals are oldest first, never run backwards, only the last
// is open, and each closes where the next opens.
func checkIntervals(t *testing.T, h []store.ControlState) {
	t.Helper()
	for id, ivs := range byControl(h) {
		for i, iv := range ivs {
			checkUTC(t, id+" Since", iv.Since)
			if iv.Until != nil && iv.Until.Before(iv.Since) {
				t.Errorf("%s interval %d runs backwards: since %v until %v", id, i, iv.Since, *iv.Until)
			}
			if iv.Evaluations < 1 {
				t.Errorf("%s interval %d: Evaluations = %d, want >= 1", id, i, iv.Evaluations)
			}
			if i == len(ivs)-1 {
				continue
			}
			if iv.Until == nil {
				t.Errorf("%s interval %d of %d is open; only the last may be", id, i, len(ivs))
				continue
			}
			if next := ivs[i+1]; !next.Since.Equal(*iv.Until) {
				t.Errorf("%s interval %d ends %v but the next starts %v (gap or overlap)", id, i, *iv.Until, next.Since)
			}
			if ivs[i+1].Since.Before(iv.Since) {
				t.Errorf("%s history not oldest first: %v before %v", id, iv.Since, ivs[i+1].Since)
			}
		}
	}
}

func testApplyStates(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	mustEnroll(t, s, device("dev-b", "machine-b"))
	t1, t2, t3, t4 := at(time.Hour), at(2*time.Hour), at(3*time.Hour), at(4*time.Hour)

	// First apply opens one interval per control.
	mustApply(t, s, "dev-a", t1,
		store.ControlState{ControlID: "c1", Status: store.Pass, Reason: "enabled", EvidenceSeq: 1, Evidence: json.RawMessage(`{"v":1}`)},
		store.ControlState{ControlID: "c2", Status: store.Fail, Reason: "off", EvidenceSeq: 2},
		store.ControlState{ControlID: "c3", Status: store.NotApplicable},
	)
	cur := mustCurrent(t, s, "dev-a")
	if len(cur) != 3 {
		t.Fatalf("CurrentStates after first apply = %d, want 3", len(cur))
	}
	wantC1 := store.ControlState{ControlID: "c1", Status: store.Pass, Reason: "enabled", EvidenceSeq: 1,
		Evidence: json.RawMessage(`{"v":1}`), Since: t1, EvaluatedAt: t1, Evaluations: 1}
	if d := diff(cur["c1"], wantC1); d != "" {
		t.Errorf("c1 after first apply:\n%s", d)
	}
	if st := cur["c2"]; st.Status != store.Fail || !st.Since.Equal(t1) || st.Evaluations != 1 {
		t.Errorf("c2 after first apply = %+v", st)
	}

	// Same status again: one open interval, evidence updated, Since kept.
	mustApply(t, s, "dev-a", t2,
		store.ControlState{ControlID: "c1", Status: store.Pass, Reason: "still enabled", EvidenceSeq: 7, Evidence: json.RawMessage(`{"v":7}`)},
		store.ControlState{ControlID: "c2", Status: store.Fail, Reason: "off", EvidenceSeq: 8},
	)
	hist := mustHistory(t, s, "dev-a")
	if len(hist["c1"]) != 1 || len(hist["c2"]) != 1 {
		t.Fatalf("history after same-status apply = %d/%d intervals for c1/c2, want 1/1", len(hist["c1"]), len(hist["c2"]))
	}
	wantC1 = store.ControlState{ControlID: "c1", Status: store.Pass, Reason: "still enabled", EvidenceSeq: 7,
		Evidence: json.RawMessage(`{"v":7}`), Since: t1, EvaluatedAt: t2, Evaluations: 2}
	if d := diff(hist["c1"][0], wantC1); d != "" {
		t.Errorf("c1 after same-status apply:\n%s", d)
	}
	if c3 := mustCurrent(t, s, "dev-a")["c3"]; c3.Evaluations != 1 || !c3.EvaluatedAt.Equal(t1) {
		t.Errorf("c3 (not re-evaluated) = %+v; want untouched", c3)
	}

	// Status change: old interval closes at t3, new one opens at t3.
	mustApply(t, s, "dev-a", t3,
		store.ControlState{ControlID: "c1", Status: store.Fail, Reason: "disabled", EvidenceSeq: 9},
		store.ControlState{ControlID: "c2", Status: store.Fail, EvidenceSeq: 10},
	)
	// And back again at t4.
	mustApply(t, s, "dev-a", t4, store.ControlState{ControlID: "c1", Status: store.Pass, EvidenceSeq: 11})

	hist = mustHistory(t, s, "dev-a")
	type span struct {
		status       string
		since, until time.Time // zero until: open
		evaluations  int
	}
	spans := func(ivs []store.ControlState) []span {
		var out []span
		for _, iv := range ivs {
			sp := span{status: iv.Status, since: iv.Since.UTC(), evaluations: iv.Evaluations}
			if iv.Until != nil {
				sp.until = iv.Until.UTC()
			}
			out = append(out, sp)
		}
		return out
	}
	wantSpans := map[string][]span{
		"c1": {{store.Pass, t1, t3, 2}, {store.Fail, t3, t4, 1}, {store.Pass, t4, time.Time{}, 1}},
		"c2": {{store.Fail, t1, time.Time{}, 3}},
		"c3": {{store.NotApplicable, t1, time.Time{}, 1}},
	}
	for id, want := range wantSpans {
		if got := spans(hist[id]); !reflect.DeepEqual(got, want) {
			t.Errorf("StateHistory %s =\n  %+v\nwant\n  %+v", id, got, want)
		}
	}
	if len(hist) != len(wantSpans) {
		t.Errorf("StateHistory controls = %d, want %d", len(hist), len(wantSpans))
	}
	cur = mustCurrent(t, s, "dev-a")
	if len(cur) != 3 || cur["c1"].Status != store.Pass || !cur["c1"].Since.Equal(t4) || cur["c2"].Status != store.Fail {
		t.Errorf("CurrentStates after changes = %+v", cur)
	}
	if c1 := cur["c1"]; c1.EvidenceSeq != 11 || c1.Reason != "" {
		t.Errorf("c1 current evidence = seq %d reason %q, want seq 11 and no reason", c1.EvidenceSeq, c1.Reason)
	}

	// Another device is independent.
	if got := mustCurrent(t, s, "dev-b"); len(got) != 0 {
		t.Errorf("CurrentStates(dev-b) = %+v, want none", got)
	}
	mustApply(t, s, "dev-b", t2, store.ControlState{ControlID: "c1", Status: store.Unknown})
	if got := mustCurrent(t, s, "dev-b"); len(got) != 1 || got["c1"].Status != store.Unknown || !got["c1"].Since.Equal(t2) {
		t.Errorf("CurrentStates(dev-b) = %+v, want c1 unknown since t2", got)
	}
	if got := mustCurrent(t, s, "dev-a"); got["c1"].Status != store.Pass || !got["c1"].Since.Equal(t4) {
		t.Errorf("dev-a c1 changed by dev-b apply: %+v", got["c1"])
	}

	// An empty apply changes nothing.
	mustApply(t, s, "dev-a", at(5*time.Hour))
	if got := mustHistory(t, s, "dev-a"); len(got["c1"]) != 3 {
		t.Errorf("empty apply changed history: %d c1 intervals", len(got["c1"]))
	}
}

func testApplyStatesLate(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	t1, t2, t3 := at(time.Hour), at(2*time.Hour), at(3*time.Hour)

	mustApply(t, s, "dev-a", t1, store.ControlState{ControlID: "c1", Status: store.Pass})
	mustApply(t, s, "dev-a", t3, store.ControlState{ControlID: "c1", Status: store.Fail})

	// A late same-status evaluation (from before the open interval's Since)
	// neither moves Since nor winds EvaluatedAt back.
	mustApply(t, s, "dev-a", t2, store.ControlState{ControlID: "c1", Status: store.Fail})
	cur := mustCurrent(t, s, "dev-a")["c1"]
	if cur.Status != store.Fail || !cur.Since.Equal(t3) {
		t.Errorf("after late same-status apply: %s since %v, want fail since %v", cur.Status, cur.Since, t3)
	}
	if cur.EvaluatedAt.Before(t3) {
		t.Errorf("EvaluatedAt went backwards to %v (was %v)", cur.EvaluatedAt, t3)
	}

	// A late status change (at t2 < open Since t3) must never produce an
	// interval that ends before it starts; checkIntervals in mustHistory
	// verifies that and contiguity.
	mustApply(t, s, "dev-a", t2, store.ControlState{ControlID: "c1", Status: store.Pass})
	h := mustHistory(t, s, "dev-a")["c1"]
	if len(h) == 0 {
		t.Fatal("no c1 history")
	}
	if last := h[len(h)-1]; last.Status != store.Pass || last.Until != nil {
		t.Errorf("open c1 interval = %s until %v, want pass and open", last.Status, last.Until)
	}
	for _, iv := range h {
		if iv.Since.Before(t1) {
			t.Errorf("interval %s starts %v, before the first evaluation %v", iv.Status, iv.Since, t1)
		}
	}
	// Far in the past, with no history behind it at all.
	mustApply(t, s, "dev-a", t0.Add(-365*24*time.Hour), store.ControlState{ControlID: "c1", Status: store.Fail})
	mustHistory(t, s, "dev-a")
}

// --- concurrency ---

func testConcurrentIngest(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("Ingest", func(t *testing.T) {
		testConcurrentIngestWith(t, open, func(s store.Store) ingestFunc { return s.Ingest })
	})
	// A report scored in its transaction reads its device's row first
	// (and writes it last): batches of one device at two replicas must
	// still chain one after the other.
	t.Run("IngestScored", func(t *testing.T) {
		testConcurrentIngestWith(t, open, func(s store.Store) ingestFunc {
			si := s.(store.ScoredIngester)
			return func(ctx context.Context, id string, obs []store.Observation, at time.Time) (int, error) {
				n, scoreErr, err := si.IngestScored(ctx, id, obs, at, func(ctx context.Context, r store.ScoreReader) (store.StatePlan, error) {
					cur, err := r.CurrentStates(ctx, id)
					if err != nil {
						return store.StatePlan{}, err
					}
					return states.Plan(id, cur, []store.ControlState{st("C1", store.Pass)}, nil, at), nil
				})
				if scoreErr != nil && !errors.Is(scoreErr, store.ErrConflict) {
					err = errors.Join(err, scoreErr)
				}
				return n, err
			}
		})
	})
}

type ingestFunc func(ctx context.Context, deviceID string, obs []store.Observation, receivedAt time.Time) (int, error)

func testConcurrentIngestWith(t *testing.T, open func(*testing.T) store.Store, with func(store.Store) ingestFunc) {
	s := open(t)
	ingest := with(s)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	mustEnroll(t, s, device("dev-b", "machine-b"))

	// Eight writers on dev-a: writer w sends seqs w*10+1 .. w*10+20 (each
	// overlaps the next) in batches of 5, then resends its whole range;
	// writer 8 sends everything. Two writers on dev-b send 1..50 each.
	const writers = 8
	const union = writers*10 + 10
	type job struct {
		device   string
		from, to uint64
	}
	var jobs []job
	for w := range writers {
		jobs = append(jobs, job{"dev-a", uint64(w*10 + 1), uint64(w*10 + 20)})
	}
	jobs = append(jobs, job{"dev-a", 1, union}, job{"dev-b", 1, 50}, job{"dev-b", 1, 50})

	var mu sync.Mutex
	stored := map[string]int{}
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			all := seqs(j.from, j.to, fmt.Sprintf("c%d", i%3))
			for k := 0; k < len(all); k += 5 {
				m, err := ingest(t.Context(), j.device, all[k:min(k+5, len(all))], at(time.Duration(i)*time.Minute))
				if err != nil {
					t.Errorf("writer %d: Ingest: %v", i, err)
					return
				}
				n += m
			}
			m, err := ingest(t.Context(), j.device, all, at(time.Hour))
			if err != nil {
				t.Errorf("writer %d: resend: %v", i, err)
				return
			}
			n += m
			mu.Lock()
			stored[j.device] += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	for _, tc := range []struct {
		device string
		want   int
	}{{"dev-a", union}, {"dev-b", 50}} {
		if stored[tc.device] != tc.want {
			t.Errorf("%s: Ingest reported %d new in total, want exactly %d", tc.device, stored[tc.device], tc.want)
		}
		c := mustCounts(t, s, tc.device)
		if c.Total != tc.want || c.MinSeq != 1 || c.MaxSeq != uint64(tc.want) {
			t.Errorf("%s: Counts = total %d seqs %d..%d, want %d seqs 1..%d", tc.device, c.Total, c.MinSeq, c.MaxSeq, tc.want, tc.want)
		}
		// Every seq exactly once, whichever writer won it.
		got := map[uint64]int{}
		for _, col := range []string{"c0", "c1", "c2"} {
			h, err := s.History(t.Context(), tc.device, col, 10*tc.want)
			if err != nil {
				t.Fatalf("History: %v", err)
			}
			for _, o := range h {
				got[o.Seq]++
			}
		}
		for seq := uint64(1); seq <= uint64(tc.want); seq++ {
			if got[seq] != 1 {
				t.Errorf("%s: seq %d stored %d times, want 1", tc.device, seq, got[seq])
			}
		}
	}
}

// --- helpers ---

func checkUTC(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if tm.Location() != time.UTC {
		t.Errorf("%s = %v: location %v, want UTC", what, tm, tm.Location())
	}
}

// diff compares two values of the same struct type field by field, times
// by instant (time.Time.Equal) and raw JSON by bytes (nil equals empty),
// and describes the differences; "" when equal.
func diff(got, want any) string {
	var out bytes.Buffer
	diffValue(&out, "", reflect.ValueOf(got), reflect.ValueOf(want))
	return out.String()
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage(nil))
)

func diffValue(out *bytes.Buffer, path string, g, w reflect.Value) {
	switch {
	case g.Type() == timeType:
		gt, wt := g.Interface().(time.Time), w.Interface().(time.Time)
		if !gt.Equal(wt) {
			fmt.Fprintf(out, "  %s: got %v, want %v\n", path, gt, wt)
		}
	case g.Type() == rawType || g.Type() == reflect.TypeOf([]byte(nil)):
		if !bytes.Equal(g.Bytes(), w.Bytes()) {
			fmt.Fprintf(out, "  %s: got %q, want %q\n", path, g.Bytes(), w.Bytes())
		}
	case g.Kind() == reflect.Pointer:
		switch {
		case g.IsNil() && w.IsNil():
		case g.IsNil() || w.IsNil():
			fmt.Fprintf(out, "  %s: got %s, want %s\n", path, fmtPtr(g), fmtPtr(w))
		default:
			diffValue(out, path, g.Elem(), w.Elem())
		}
	case g.Kind() == reflect.Struct:
		for i := range g.NumField() {
			name := g.Type().Field(i).Name
			if path != "" {
				name = path + "." + name
			}
			diffValue(out, name, g.Field(i), w.Field(i))
		}
	default:
		if !reflect.DeepEqual(g.Interface(), w.Interface()) {
			fmt.Fprintf(out, "  %s: got %v, want %v\n", path, g.Interface(), w.Interface())
		}
	}
}

func fmtPtr(v reflect.Value) string {
	if v.IsNil() {
		return "nil"
	}
	return fmt.Sprint(v.Elem().Interface())
}
