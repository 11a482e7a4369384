package period_test

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/evident-dev/evident/internal/golden"
	"github.com/evident-dev/evident/server/period"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// fixture is an empty store with helpers to fill it.
type fixture struct {
	t   testing.TB
	st  *sqlite.Store
	seq map[string]uint64
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fixture{t: t, st: st, seq: map[string]uint64{}}
}

func (f *fixture) enroll(id, hostname, serial string, at time.Time) {
	f.t.Helper()
	if _, err := f.st.EnrollDevice(f.t.Context(), store.Device{ID: id, Hostname: hostname, SerialNumber: serial, GOOS: "darwin",
		OSVersion: "15.1", EnrolledAt: at}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) report(id string, at time.Time) {
	f.t.Helper()
	f.seq[id]++
	o := store.Observation{Seq: f.seq[id], Collector: "os", CollectedAt: at, Status: "ok", Payload: json.RawMessage(`{}`)}
	if _, err := f.st.Ingest(f.t.Context(), id, []store.Observation{o}, at); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) apply(id string, at time.Time, control, status, reason string) {
	f.t.Helper()
	f.seq[id+control]++
	s := store.ControlState{ControlID: control, Status: status, Reason: reason, EvidenceSeq: f.seq[id+control]}
	if err := states.Record(f.t.Context(), f.st, id, []store.ControlState{s}, nil, at); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) waive(w store.Waiver) {
	f.t.Helper()
	if w.Reason == "" {
		w.Reason = "reason of " + w.ID
	}
	w.Approver, w.CreatedBy, w.CreatedAt = "approver of "+w.ID, "admin", day(2, 1)
	if err := f.st.CreateWaiver(f.t.Context(), w); err != nil {
		f.t.Fatal(err)
	}
}

// waiverFleet: three devices enrolled in February, evaluated from their
// enrollment, so all of March is in scope.
//
//	dev-w1  C-ENC fails 03-10 to 03-20. w-part (C-ENC, 03-15 to 04-30) waives
//	        its last 5 days; w-all (every control, 03-18 to 03-25) overlaps
//	        it and loses to the control-specific waiver.
//	dev-w2  C-ENC fails from 03-01, still open. w-exp (every control,
//	        02-20 to 03-11) expired: it waives the first 10 days only.
//	dev-w3  C-FW fails 03-05 to 03-25. w-rev (C-FW, 03-01 to 06-01) was
//	        revoked 03-08: it waives 3 days. w-other (C-ENC) waives nothing:
//	        C-ENC passes all period. w-after starts after the period: not
//	        in the report.
func waiverFleet(t testing.TB) *fixture {
	f := newFixture(t)
	feb1 := day(2, 1)
	for _, id := range []string{"dev-w1", "dev-w2", "dev-w3"} {
		f.enroll(id, "host-"+id[4:], "", feb1)
		f.apply(id, feb1, "C-ENC", store.Pass, "encrypted")
		f.apply(id, feb1, "C-FW", store.Pass, "firewall on")
		f.report(id, day(3, 2))
	}
	f.apply("dev-w1", day(3, 10), "C-ENC", store.Fail, "not encrypted")
	f.apply("dev-w1", day(3, 20), "C-ENC", store.Pass, "encrypted")
	f.apply("dev-w2", from, "C-ENC", store.Fail, "not encrypted")
	f.apply("dev-w3", day(3, 5), "C-FW", store.Fail, "firewall off")
	f.apply("dev-w3", day(3, 25), "C-FW", store.Pass, "firewall on")

	f.waive(store.Waiver{ID: "w-part", DeviceID: "dev-w1", ControlID: "C-ENC", StartsAt: day(3, 15), ExpiresAt: day(4, 30)})
	f.waive(store.Waiver{ID: "w-all", DeviceID: "dev-w1", StartsAt: day(3, 18), ExpiresAt: day(3, 25)})
	f.waive(store.Waiver{ID: "w-exp", DeviceID: "dev-w2", StartsAt: day(2, 20), ExpiresAt: day(3, 11)})
	f.waive(store.Waiver{ID: "w-rev", DeviceID: "dev-w3", ControlID: "C-FW", StartsAt: day(3, 1), ExpiresAt: day(6, 1)})
	if err := f.st.RevokeWaiver(t.Context(), "w-rev", day(3, 8)); err != nil {
		t.Fatal(err)
	}
	f.waive(store.Waiver{ID: "w-other", DeviceID: "dev-w3", ControlID: "C-ENC", StartsAt: day(3, 1), ExpiresAt: day(6, 1)})
	f.waive(store.Waiver{ID: "w-after", DeviceID: "dev-w3", StartsAt: to, ExpiresAt: day(6, 1)})
	return f
}

func waived(e period.Exception, id string) period.Exception {
	e.Waived, e.WaiverID, e.WaiverReason, e.Approver = true, id, "reason of "+id, "approver of "+id
	return e
}

// TestBuildWaivers checks waived exceptions to the second: a fail interval
// partly waived is split at the waiver's start, an expired waiver stops at
// its expiry, a revoked one at its revocation, and overlapping waivers
// never count time twice.
func TestBuildWaivers(t *testing.T) {
	f := waiverFleet(t)
	r := build(t, f.st, period.Options{From: from, To: to, Now: now, Seed: 1})
	const d = 86400
	w1 := func(e period.Exception) period.Exception { e.Hostname = "host-w1"; return e }
	w2 := func(e period.Exception) period.Exception { e.Hostname = "host-w2"; return e }
	w3 := func(e period.Exception) period.Exception { e.Hostname = "host-w3"; return e }

	enc := r.Controls[0]
	checkControl(t, enc, summary{
		Population: 3, Always: 1,
		InScope:   3 * periodSeconds,
		Compliant: 20*d + 30*d,
		Exceptions: []period.Exception{
			w1(exc("dev-w1", "C-ENC", store.Fail, day(3, 10), day(3, 15), false, "not encrypted", 2)),
			waived(w1(exc("dev-w1", "C-ENC", store.Fail, day(3, 15), day(3, 20), false, "not encrypted", 2)), "w-part"),
			waived(w2(exc("dev-w2", "C-ENC", store.Fail, from, day(3, 11), false, "not encrypted", 2)), "w-exp"),
			w2(exc("dev-w2", "C-ENC", store.Fail, day(3, 11), to, true, "not encrypted", 2)),
		},
	})
	if enc.WaivedSeconds != 15*d || enc.DevicesCompliantOrWaived != 1 {
		t.Errorf("C-ENC: waived %ds, %d devices compliant or waived; want %ds, 1", enc.WaivedSeconds, enc.DevicesCompliantOrWaived, 15*d)
	}
	if want := 100 * float64(65*d) / float64(90*d); enc.CompliantOrWaivedPercent != want {
		t.Errorf("C-ENC: CompliantOrWaivedPercent = %v, want %v", enc.CompliantOrWaivedPercent, want)
	}

	fw := r.Controls[1]
	checkControl(t, fw, summary{
		Population: 3, Always: 2,
		InScope:   3 * periodSeconds,
		Compliant: 30*d + 30*d + 10*d,
		Exceptions: []period.Exception{
			waived(w3(exc("dev-w3", "C-FW", store.Fail, day(3, 5), day(3, 8), false, "firewall off", 2)), "w-rev"),
			w3(exc("dev-w3", "C-FW", store.Fail, day(3, 8), day(3, 25), false, "firewall off", 2)),
		},
	})
	if fw.WaivedSeconds != 3*d || fw.DevicesCompliantOrWaived != 2 {
		t.Errorf("C-FW: waived %ds, %d devices compliant or waived; want %ds, 2", fw.WaivedSeconds, fw.DevicesCompliantOrWaived, 3*d)
	}

	used := func(ws []period.WaiverRef) map[string]int64 {
		m := map[string]int64{}
		for _, w := range ws {
			m[w.ID] = w.WaivedSeconds
		}
		return m
	}
	if got, want := used(enc.Waivers), map[string]int64{"w-part": 5 * d, "w-exp": 10 * d}; !reflect.DeepEqual(got, want) {
		t.Errorf("C-ENC waivers = %v, want %v", got, want)
	}
	if got, want := used(fw.Waivers), map[string]int64{"w-rev": 3 * d}; !reflect.DeepEqual(got, want) {
		t.Errorf("C-FW waivers = %v, want %v", got, want)
	}
	// Every waiver in force during the period is shown, used or not.
	if got, want := used(r.Waivers), map[string]int64{"w-part": 5 * d, "w-all": 0, "w-exp": 10 * d, "w-rev": 3 * d, "w-other": 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("report waivers = %v, want %v", got, want)
	}
	for _, w := range r.Waivers {
		if w.ID == "w-rev" && (w.RevokedAt == nil || !w.RevokedAt.Equal(day(3, 8))) {
			t.Errorf("w-rev RevokedAt = %v, want %v", w.RevokedAt, day(3, 8))
		}
		if w.Hostname == "" || w.Approver == "" {
			t.Errorf("waiver %s without hostname or approver: %+v", w.ID, w)
		}
	}

	golden.Check(t, "waivers.txt", write(t, period.WriteText, r))
	golden.Check(t, "waivers.csv", write(t, period.WriteCSV, r))
	golden.Check(t, "waivers-summary.csv", write(t, period.WriteSummaryCSV, r))
}

// TestBuildWaiversNowInsidePeriod: a waiver's time after Now is not counted,
// and the waived piece still open at Now is open.
func TestBuildWaiversNowInsidePeriod(t *testing.T) {
	f := waiverFleet(t)
	cut := day(3, 17)
	r := build(t, f.st, period.Options{From: from, To: to, Now: cut})
	var got []period.Exception
	for _, e := range r.Controls[0].Exceptions {
		if e.DeviceID == "dev-w1" {
			got = append(got, e)
		}
	}
	if len(got) != 2 || got[1].WaiverID != "w-part" || !got[1].End.Equal(cut) || !got[1].Open || got[1].DurationSeconds != 2*86400 || got[0].Open {
		t.Errorf("dev-w1 exceptions up to %v = %+v; want unwaived 03-10 to 03-15, then waived by w-part to Now, open", cut, got)
	}
}

// populationFleet: devices with and without serial numbers, and an
// inventory to reconcile them with.
func populationFleet(t testing.TB, withInventory bool) *fixture {
	f := newFixture(t)
	feb1 := day(2, 1)
	f.enroll("dev-p1", "mac-1", "C02ABC", feb1)        // serial match
	f.enroll("dev-p2", "Linux-2", "", feb1)            // hostname match with a domain suffix
	f.enroll("dev-p3", "win-3", "SN3", feb1)           // in the inventory, silent in March
	f.enroll("dev-p4", "stray-4", "SN4", feb1)         // not in the inventory
	f.enroll("dev-p5", "mac-5", "SN5", day(4, 2))      // enrolled after the period
	f.enroll("dev-p6", "renamed-6", "sn6", feb1)       // serial match, hostname differs
	f.enroll("dev-p7", "mac-7.corp.example", "", feb1) // hostname match, both with a domain
	for _, id := range []string{"dev-p1", "dev-p2", "dev-p4", "dev-p6", "dev-p7"} {
		f.report(id, day(3, 3))
	}
	f.report("dev-p3", day(2, 10))
	if withInventory {
		rows := []store.InventoryRow{
			{Line: 2, SerialNumber: " c02abc ", Hostname: "MAC-1.corp.example.com", Owner: "ada@example.com"},
			{Line: 3, Hostname: "linux-2.corp.example.com", Owner: "linus@example.com"},
			{Line: 4, SerialNumber: "SN3", Hostname: "win-3", Owner: "bill@example.com"},
			{Line: 5, SerialNumber: "SN-GONE", Hostname: "ghost", Owner: "casper@example.com"},
			{Line: 6, SerialNumber: "OTHER", Hostname: "mac-1"}, // another machine named mac-1
			{Line: 7, SerialNumber: "SN5", Hostname: "mac-5"},
			{Line: 8, SerialNumber: "SN6", Hostname: "old-name-6"},
			{Line: 9, Hostname: "MAC-7.other.example"},
		}
		if _, err := f.st.ReplaceInventory(t.Context(), store.InventoryImport{ImportedAt: day(4, 1), Source: "Jamf export 2026-04",
			Filename: "jamf.csv", SHA256: "0123abcd"}, rows); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// TestBuildPopulation reconciles the fleet with the inventory: by serial
// (trimmed, case-insensitive), else by short hostname, never by hostname
// against a device reporting another serial number.
func TestBuildPopulation(t *testing.T) {
	f := populationFleet(t, true)
	r := build(t, f.st, period.Options{From: from, To: to, Now: now})
	p := r.Population
	if !p.Imported || p.InventorySource != "Jamf export 2026-04" || p.InventoryFilename != "jamf.csv" || p.InventorySHA256 != "0123abcd" ||
		p.InventoryImportedAt == nil || !p.InventoryImportedAt.Equal(day(4, 1)) || p.InventoryRows != 8 {
		t.Errorf("inventory header = %+v", p)
	}
	var never []int
	for _, r := range p.InInventoryNeverEnrolled {
		never = append(never, r.Line)
	}
	if want := []int{5, 6, 7}; !slices.Equal(never, want) {
		t.Errorf("never enrolled = lines %v, want %v", never, want)
	}
	if len(p.InInventorySilent) != 1 || p.InInventorySilent[0].Row.Line != 4 || p.InInventorySilent[0].Device.ID != "dev-p3" ||
		p.InInventorySilent[0].MatchedBy != "serial_number" {
		t.Errorf("silent = %+v, want line 4 = dev-p3 by serial number", p.InInventorySilent)
	}
	if got, want := ids(p.EnrolledNotInInventory), []string{"dev-p4"}; !slices.Equal(got, want) {
		t.Errorf("enrolled, not in the inventory = %v, want %v", got, want)
	}
	if p.Matched != 5 || p.NeverEnrolledCount != 3 || p.SilentCount != 1 || p.NotInInventoryCount != 1 {
		t.Errorf("counts: matched %d, never enrolled %d, silent %d, not in inventory %d; want 5, 3, 1, 1",
			p.Matched, p.NeverEnrolledCount, p.SilentCount, p.NotInInventoryCount)
	}
	golden.Check(t, "population.txt", write(t, period.WriteText, r))
}

// TestBuildNoInventory: without an import the section says so, with empty
// lists (not null) in JSON.
func TestBuildNoInventory(t *testing.T) {
	f := populationFleet(t, false)
	r := build(t, f.st, period.Options{From: from, To: to, Now: now})
	p := r.Population
	if p.Imported || p.InventoryImportedAt != nil || p.InInventoryNeverEnrolled == nil || p.InInventorySilent == nil || p.EnrolledNotInInventory == nil {
		t.Errorf("population without an inventory = %+v", p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"imported":false,"inventory_rows":0,"matched":0,"never_enrolled_count":0,"silent_count":0,"not_in_inventory_count":0,` +
		`"in_inventory_never_enrolled":[],"in_inventory_silent":[],"enrolled_not_in_inventory":[]}`; string(b) != want {
		t.Errorf("JSON = %s\nwant %s", b, want)
	}
}

// TestPopulationSerialsTellTwinsApart: three Windows laptops share the
// hostname LAPTOP-7F3K (as recorded ones do). Enrolled without serial
// numbers, hostnames cannot tell them apart: one silent laptop hides behind
// the two that report. Once their agents send serial numbers (the Hello's
// facts refresh the device), each inventory row matches its own laptop and
// the silent one is named.
func TestPopulationSerialsTellTwinsApart(t *testing.T) {
	f := newFixture(t)
	feb1 := day(2, 1)
	serials := map[string]string{"dev-t1": "5CD1234XYZ", "dev-t2": "5CD1234XZA", "dev-t3": "PF2ABC12"}
	for _, id := range []string{"dev-t1", "dev-t2", "dev-t3"} {
		f.enroll(id, "LAPTOP-7F3K", "", feb1)
	}
	f.report("dev-t1", day(3, 3))
	f.report("dev-t2", day(3, 4))
	rows := []store.InventoryRow{{Line: 2, SerialNumber: "5CD1234XYZ", Hostname: "LAPTOP-7F3K", Owner: "ada"},
		{Line: 3, SerialNumber: "5CD1234XZA", Hostname: "LAPTOP-7F3K", Owner: "bob"},
		{Line: 4, SerialNumber: "PF2ABC12", Hostname: "LAPTOP-7F3K", Owner: "carol"}}
	if _, err := f.st.ReplaceInventory(t.Context(), store.InventoryImport{ImportedAt: day(4, 1), Source: "Intune", Filename: "intune.csv"}, rows); err != nil {
		t.Fatal(err)
	}
	before := build(t, f.st, period.Options{From: from, To: to, Now: now}).Population
	if before.SilentCount != 0 {
		t.Fatalf("by hostname, silent = %+v; want none seen (the twins cover for each other)", before.InInventorySilent)
	}
	for id, sn := range serials {
		if _, err := f.st.UpdateDeviceFacts(t.Context(), id, store.DeviceFacts{SerialNumber: sn}); err != nil {
			t.Fatal(err)
		}
	}
	p := build(t, f.st, period.Options{From: from, To: to, Now: now}).Population
	if p.Matched != 3 || p.SilentCount != 1 || p.InInventorySilent[0].Device.ID != "dev-t3" || p.InInventorySilent[0].Row.Owner != "carol" ||
		p.InInventorySilent[0].MatchedBy != "serial_number" || p.NotInInventoryCount != 0 {
		t.Errorf("by serial: matched %d, silent %+v, not in inventory %d; want carol's laptop dev-t3 silent, matched by serial",
			p.Matched, p.InInventorySilent, p.NotInInventoryCount)
	}
}
