package sla_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/sla"
	"github.com/evident-dev/evident/server/store"
)

const day = 24 * time.Hour

var (
	t0   = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	from = t0
	to   = t0.Add(30 * day)
)

// snap is one patches observation at t0+d listing the pending security
// packages ("name=version").
type snap struct {
	at      time.Duration
	pending []string
	extra   int    // pending_security_updates beyond the list (a truncated list)
	status  string // "" means ok
	raw     string // payload as is, when set
	manager string // "" means apt
	stale   bool   // the package index was last refreshed 30 days before
}

func history(t *testing.T, snaps ...snap) []store.Observation {
	t.Helper()
	var out []store.Observation
	for i, s := range snaps {
		o := store.Observation{Seq: uint64(i + 1), Collector: evidence.Patches, CollectedAt: t0.Add(s.at), Status: "ok"}
		if s.status != "" {
			o.Status, o.Error = s.status, "apt-get failed"
		}
		switch {
		case s.raw != "":
			o.Payload = json.RawMessage(s.raw)
		default:
			refreshed := t0.Add(s.at - time.Hour)
			if s.stale {
				refreshed = t0.Add(s.at - 30*day)
			}
			p := evidence.PatchesPayload{Manager: "apt", OS: evidence.OSRelease{ID: "ubuntu", VersionID: "24.04"},
				Index: &evidence.PackageIndex{Refreshed: &refreshed, Source: "/var/lib/apt/lists/x_noble-security_InRelease"}}
			if s.manager == "none" {
				p = evidence.PatchesPayload{OS: evidence.OSRelease{ID: "windows"}}
			}
			for _, nv := range s.pending {
				n, v, _ := strings.Cut(nv, "=")
				p.PendingSecurity = append(p.PendingSecurity, evidence.Package{Name: n, Version: v, Origin: "Ubuntu:24.04/noble-security"})
			}
			p.PendingSecurityUpdates = len(p.PendingSecurity) + s.extra
			p.PendingUpdates = p.PendingSecurityUpdates + 3
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			o.Payload = b
		}
		out = append(out, o)
	}
	// The store returns newest first; Compute must not care.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

type wantItem struct {
	pkg        string
	occurrence int
	status     string
	days       float64
}

func TestCompute(t *testing.T) {
	tests := []struct {
		name  string
		snaps []snap
		want  sla.Figures // counts only
		items []wantItem
	}{
		{
			name: "on time, late, still open",
			snaps: []snap{
				{at: -day},
				{at: 0, pending: []string{"openssl=3.0.13-1", "curl=8.5.0-2"}},
				{at: 3 * day, pending: []string{"curl=8.5.0-2"}},                   // openssl fixed after 3 days
				{at: 20 * day, pending: []string{"curl=8.5.0-2", "sudo=1.9.15-1"}}, // sudo appears
				{at: 25 * day, pending: []string{"sudo=1.9.15-1"}},                 // curl fixed after 25 days: late
				{at: 29 * day, pending: []string{"sudo=1.9.15-1"}},                 // sudo still open at the end (10 days)
			},
			want:  sla.Figures{Updates: 3, ResolvedWithin: 1, ResolvedLate: 1, StillOpen: 1, Due: 2, Percent: 50, Observations: 6},
			items: []wantItem{{"openssl", 1, sla.OnTime, 3}, {"curl", 1, sla.Late, 25}, {"sudo", 1, sla.Open, 10}},
		},
		{
			name: "open past the SLA at the end",
			snaps: []snap{
				{at: 2 * day, pending: []string{"linux-image=6.8.0-51"}},
				{at: 29 * day, pending: []string{"linux-image=6.8.0-51"}},
			},
			want:  sla.Figures{Updates: 1, StillOpen: 1, OpenPastSLA: 1, Due: 1, Percent: 0, Observations: 2},
			items: []wantItem{{"linux-image", 1, sla.OpenPastSLA, 28}},
		},
		{
			name: "reappearing update is a new occurrence",
			snaps: []snap{
				{at: -day},
				{at: 0, pending: []string{"openssl=3.0.13-1"}},
				{at: 1 * day},
				{at: 10 * day, pending: []string{"openssl=3.0.13-1"}},
				{at: 12 * day},
			},
			want:  sla.Figures{Updates: 2, ResolvedWithin: 2, Due: 2, Percent: 100, Observations: 5},
			items: []wantItem{{"openssl", 1, sla.OnTime, 1}, {"openssl", 2, sla.OnTime, 2}},
		},
		{
			name: "a new version is a new update",
			snaps: []snap{
				{at: -day},
				{at: 0, pending: []string{"openssl=3.0.13-1"}},
				{at: 2 * day, pending: []string{"openssl=3.0.13-2"}},
				{at: 4 * day},
			},
			want:  sla.Figures{Updates: 2, ResolvedWithin: 2, Due: 2, Percent: 100, Observations: 4},
			items: []wantItem{{"openssl", 1, sla.OnTime, 2}, {"openssl", 1, sla.OnTime, 2}},
		},
		{
			name: "undecodable, failed and list-less observations are skipped",
			snaps: []snap{
				{at: 0, pending: []string{"openssl=3.0.13-1"}},
				{at: 1 * day, raw: `{"manager": "apt", "pending_security": "not a list"}`},
				{at: 2 * day, raw: `not json`},
				{at: 3 * day, status: "error"},
				{at: 4 * day, manager: "none"},
				{at: 20 * day},
			},
			want:  sla.Figures{Updates: 1, ResolvedLate: 1, Due: 1, Percent: 0, Observations: 6, Undecodable: 2, Failed: 1, NoList: 1},
			items: []wantItem{{"openssl", 1, sla.Late, 20}},
		},
		{
			name: "a truncated list does not resolve what it leaves out",
			snaps: []snap{
				{at: -day},
				{at: 0, pending: []string{"a=1", "b=1"}},
				{at: 1 * day, pending: []string{"a=1"}, extra: 1},
				{at: 2 * day, pending: []string{"a=1"}},
			},
			want:  sla.Figures{Updates: 2, ResolvedWithin: 1, StillOpen: 1, OpenPastSLA: 1, Due: 2, Percent: 50, Observations: 4, Truncated: 1, Unlisted: 1},
			items: []wantItem{{"a", 1, sla.OpenPastSLA, 30}, {"b", 1, sla.OnTime, 2}},
		},
		{
			name: "outside the period",
			snaps: []snap{
				{at: -11 * day},
				{at: -10 * day, pending: []string{"old=1", "carried=1"}},
				{at: -8 * day, pending: []string{"carried=1"}}, // old resolved before the period
				{at: 2 * day}, // carried resolved in it, 12 days after first seen
				{at: 31 * day, pending: []string{"after=1"}}, // after the period
			},
			want:  sla.Figures{Updates: 1, ResolvedWithin: 1, Due: 1, Percent: 100, Observations: 4},
			items: []wantItem{{"carried", 1, sla.OnTime, 12}},
		},
		{
			// A device that enrolls with updates pending: how long they
			// were pending before is unknown, so they are not on time.
			name: "pending in the first report: age unknown unless already late",
			snaps: []snap{
				{at: 0, pending: []string{"a=1", "b=1", "old=1"}},
				{at: 3 * day, pending: []string{"b=1", "old=1"}},
				{at: 5 * day, pending: []string{"b=1", "c=1", "old=1"}},
				{at: 10 * day, pending: []string{"old=1"}},
				{at: 20 * day},
			},
			want: sla.Figures{Updates: 4, ResolvedWithin: 1, ResolvedLate: 1, AgeUnknown: 2, Due: 2, Percent: 50, Observations: 5},
			items: []wantItem{{"a", 1, sla.AgeUnknown, 3}, {"b", 1, sla.AgeUnknown, 10}, {"old", 1, sla.Late, 20},
				{"c", 1, sla.OnTime, 5}},
		},
		{
			// A first report that could not see everything bounds nothing:
			// "none pending" from a stale index, then a cut list.
			name: "a stale or cut first report is not the bound",
			snaps: []snap{
				{at: -day, stale: true},
				{at: 0, pending: []string{"a=1"}, extra: 20},
				{at: 2 * day, pending: []string{"a=1", "b=1"}},
				{at: 3 * day},
			},
			want:  sla.Figures{Updates: 2, AgeUnknown: 2, Percent: 100, Observations: 4, Truncated: 1, Unlisted: 20},
			items: []wantItem{{"a", 1, sla.AgeUnknown, 3}, {"b", 1, sla.AgeUnknown, 1}},
		},
		{
			name: "pending in the first report, open at the end within the SLA",
			snaps: []snap{
				{at: 20 * day, pending: []string{"x=1"}},
				{at: 29 * day, pending: []string{"x=1"}},
			},
			want:  sla.Figures{Updates: 1, StillOpen: 1, AgeUnknown: 1, Percent: 100, Observations: 2},
			items: []wantItem{{"x", 1, sla.AgeUnknown, 10}},
		},
		{
			// The agent lists at most 50: the figures say how many more
			// a report of the period had pending.
			name: "updates left out of capped lists are counted",
			snaps: []snap{
				{at: -20 * day, pending: []string{"a=1"}, extra: 90}, // before the period
				{at: -day},
				{at: 1 * day, pending: []string{"a=1", "b=1"}, extra: 31},
				{at: 2 * day, pending: []string{"a=1"}, extra: 12},
				{at: 3 * day},
			},
			want:  sla.Figures{Updates: 2, ResolvedWithin: 2, Due: 2, Percent: 100, Observations: 5, Truncated: 3, Unlisted: 31, AgeUnknown: 0},
			items: []wantItem{{"a", 2, sla.OnTime, 2}, {"b", 1, sla.OnTime, 2}},
		},
		{
			name:  "nothing pending",
			snaps: []snap{{at: 0}, {at: day}},
			want:  sla.Figures{Percent: 100, Observations: 2},
		},
		{
			name: "no history",
			want: sla.Figures{Percent: 100},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := sla.Compute(history(t, tt.snaps...), from, to, 14*day)
			if err != nil {
				t.Fatal(err)
			}
			got := f
			got.Items, got.From, got.To, got.Within = nil, time.Time{}, time.Time{}, 0
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("figures\n got %+v\nwant %+v", got, tt.want)
			}
			if len(f.Items) != len(tt.items) {
				t.Fatalf("%d items, want %d: %+v", len(f.Items), len(tt.items), f.Items)
			}
			for i, w := range tt.items {
				it := f.Items[i]
				if it.Package != w.pkg || it.Occurrence != w.occurrence || it.Status != w.status || math.Abs(it.Days-w.days) > 1e-9 {
					t.Errorf("item %d = %s #%d %s %.2f days, want %s #%d %s %.2f", i, it.Package, it.Occurrence, it.Status, it.Days,
						w.pkg, w.occurrence, w.status, w.days)
				}
				if (it.Resolved != nil) != (it.ResolvedSeq != 0) || it.FirstSeenSeq == 0 {
					t.Errorf("item %d: seqs first %d resolved %d (%v)", i, it.FirstSeenSeq, it.ResolvedSeq, it.Resolved)
				}
			}
		})
	}
}

func TestComputeErrors(t *testing.T) {
	if _, err := sla.Compute(nil, to, from, day); err == nil {
		t.Error("reversed period accepted")
	}
	if _, err := sla.Compute(nil, from, to, 0); err == nil {
		t.Error("zero SLA accepted")
	}
}

type fakeHistory map[string][]store.Observation

func (h fakeHistory) History(_ context.Context, id, collector string, limit int) ([]store.Observation, error) {
	obs, ok := h[id]
	if !ok {
		return nil, errors.New("no such device")
	}
	if collector != evidence.Patches || limit <= 0 {
		return nil, errors.New("bad query")
	}
	return obs, nil
}

func TestFleet(t *testing.T) {
	h := fakeHistory{
		"dev-a": history(t, snap{at: -day}, snap{at: 0, pending: []string{"openssl=1"}}, snap{at: day}),
		"dev-b": history(t, snap{at: -day}, snap{at: 0, pending: []string{"curl=1"}, extra: 4}, snap{at: 20 * day}),
		"dev-c": nil,
	}
	total, per, err := sla.Fleet(context.Background(), h, []string{"dev-a", "dev-b", "dev-c"}, from, to, 14*day)
	if err != nil {
		t.Fatal(err)
	}
	if total.Updates != 2 || total.ResolvedWithin != 1 || total.ResolvedLate != 1 || total.Percent != 50 || len(total.Items) != 2 || total.Unlisted != 4 {
		t.Errorf("total = %+v", total)
	}
	if per["dev-b"].Items[0].Device != "dev-b" || per["dev-c"].Updates != 0 || !total.To.Equal(to) {
		t.Errorf("per device = %+v", per)
	}
	if _, _, err := sla.Fleet(context.Background(), h, []string{"dev-x"}, from, to, day); err == nil || !strings.Contains(err.Error(), "dev-x") {
		t.Errorf("unknown device: %v", err)
	}
}

func FuzzCompute(f *testing.F) {
	f.Add([]byte(`{"manager":"apt","pending_security_updates":1,"pending_security":[{"name":"a","version":"1"}]}`), int64(0))
	f.Fuzz(func(t *testing.T, payload []byte, at int64) {
		obs := []store.Observation{
			{Seq: 1, Collector: evidence.Patches, CollectedAt: t0, Status: "ok", Payload: payload},
			{Seq: 2, Collector: evidence.Patches, CollectedAt: t0.Add(time.Duration(at)), Status: "ok", Payload: payload},
		}
		if _, err := sla.Compute(obs, from, to, day); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSummary: the sentence reports print says what the share leaves out:
// updates of unknown age and updates the agent's capped list did not name.
func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    sla.Figures
		want string
	}{
		{"nothing due", sla.Figures{Updates: 3, Percent: 100}, "n/a: 3 security updates seen, none due yet."},
		{"rounded down", sla.Figures{Updates: 9, ResolvedWithin: 7, ResolvedLate: 2, Due: 9, Percent: 100.0 * 7 / 9},
			"77.7% on time: 7 of 9 due (2 resolved late, 0 still open past the SLA); 9 seen in all."},
		{"age unknown and unlisted", sla.Figures{Updates: 50, ResolvedWithin: 1, Due: 1, Percent: 100, AgeUnknown: 49, Unlisted: 31},
			"100.0% on time: 1 of 1 due (0 resolved late, 0 still open past the SLA); 50 seen in all; 49 already pending in a device's first report, released on an unknown date, counted neither on time nor due; up to 31 more pending were not listed (the agent lists at most 50 per report) and are not counted."},
	} {
		if got := tc.f.Summary(); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	for d, want := range map[time.Duration]string{14 * day: "14 days", day: "1 day", 36 * time.Hour: "36h0m0s"} {
		if got := (sla.Figures{Within: d}).Window(); got != want {
			t.Errorf("Window(%v) = %q, want %q", d, got, want)
		}
	}
}
