// Package sla computes patch SLA figures from the history of the patches
// collector: for each security update a device ever had pending, when the
// server first saw it pending, when it saw it no longer pending, and the
// share of updates resolved within N days.
//
// The agent cannot know when a vendor released an update, only when the
// package manager first listed it as pending. "Release" is therefore
// approximated by the collected_at of the first observation listing the
// update, which is at most one collection interval (plus the package index
// refresh interval of the host) after the package index showed it. An update
// is resolved at the collected_at of the first later observation that no
// longer lists it: the server can only attest what it saw, so the time open
// is rounded up to the next observation.
//
// An update already listed in the first report the server holds (the
// device's first, or the oldest left by retention; a first report whose
// list was cut short or whose "none pending" came from a stale index does
// not count as one) may have been pending long before: its age is unknown. It counts as late or open past the SLA
// when it was seen pending longer than the SLA, and otherwise as
// AgeUnknown, never as on time.
//
// An update is identified by package name and candidate version. One that
// disappears and comes back (a reinstall of an old version, a rollback) is a
// new occurrence, counted again from when it reappeared. The collector lists
// at most 50 pending security packages: while a list is truncated (fewer
// entries than pending_security_updates), an update missing from it is not
// taken as resolved.
package sla

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/pct"
	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/store"
)

// Item statuses at the end of the period.
const (
	OnTime      = "on_time"       // resolved within the SLA
	Late        = "late"          // resolved, after the SLA
	Open        = "open"          // still pending, within the SLA
	OpenPastSLA = "open_past_sla" // still pending, past the SLA
	// AgeUnknown: in the first report the server holds, and seen pending
	// for less than the SLA (resolved or not); whether it met the SLA is
	// unknown.
	AgeUnknown = "age_unknown"
)

// Item is one occurrence of one pending security update.
type Item struct {
	Device     string `json:"device,omitempty"`
	Package    string `json:"package"`
	Version    string `json:"version,omitempty"`
	Advisory   string `json:"advisory,omitempty"`
	Severity   string `json:"severity,omitempty"`
	Occurrence int    `json:"occurrence"` // 1, or more for an update that came back
	// FirstSeen is the collected_at of the first observation listing it.
	FirstSeen    time.Time `json:"first_seen"`
	FirstSeenSeq uint64    `json:"first_seen_seq"`
	// InFirstReport: listed in the first report the server holds, so
	// pending since some time before FirstSeen.
	InFirstReport bool `json:"in_first_report,omitempty"`
	// Resolved is the collected_at of the first observation no longer
	// listing it, if that was at or before the end of the period.
	Resolved    *time.Time `json:"resolved,omitempty"`
	ResolvedSeq uint64     `json:"resolved_seq,omitempty"`
	// Open is how long it was pending: to Resolved, or to the end of the
	// period.
	Open   time.Duration `json:"open_ns"`
	Days   float64       `json:"days_open"`
	Status string        `json:"status"`
}

// Figures are the patch SLA figures of a device or a fleet over a period.
type Figures struct {
	From   time.Time     `json:"from"`
	To     time.Time     `json:"to"`
	Within time.Duration `json:"within_ns"`
	// Updates counts the occurrences pending at some point in the period.
	Updates        int `json:"updates"`
	ResolvedWithin int `json:"resolved_within"`
	ResolvedLate   int `json:"resolved_late"`
	StillOpen      int `json:"still_open"`    // at the end of the period, past the SLA or not
	OpenPastSLA    int `json:"open_past_sla"` // of StillOpen
	// AgeUnknown counts the occurrences of status AgeUnknown: neither
	// due nor on time.
	AgeUnknown int `json:"age_unknown"`
	// Due counts the occurrences whose outcome is known at the end of the
	// period: resolved, or open past the SLA.
	Due int `json:"due"`
	// Percent is ResolvedWithin over Due, in percent; 100 when nothing was
	// due (Due says so).
	Percent float64 `json:"percent"`
	Items   []Item  `json:"items"`
	// Observations counts the patches observations read up to the end of
	// the period; the others were skipped: Failed (collection failed or
	// unsupported), Undecodable (payload not understood, or from a patches
	// parser newer than this server), NoList (no package manager list,
	// e.g. Windows).
	Observations int `json:"observations"`
	Failed       int `json:"failed"`
	Undecodable  int `json:"undecodable"`
	NoList       int `json:"no_list"`
	// Truncated counts observations whose pending list was cut short.
	Truncated int `json:"truncated"`
	// Unlisted is the most pending security updates a report of the
	// period left out of its list (the agent lists at most 50), summed
	// over devices: updates pending but not counted in Updates.
	Unlisted int `json:"unlisted"`
}

// Summary is the figures in one sentence, as reports print them: the
// share on time (rounded down) of the updates whose outcome is known, and
// what the share leaves out.
func (f Figures) Summary() string {
	var b strings.Builder
	if f.Due > 0 {
		fmt.Fprintf(&b, "%s%% on time: %d of %d due (%d resolved late, %d still open past the SLA); %d seen in all",
			pct.Format(f.Percent, 1), f.ResolvedWithin, f.Due, f.ResolvedLate, f.OpenPastSLA, f.Updates)
	} else {
		fmt.Fprintf(&b, "n/a: %d security updates seen, none due yet", f.Updates)
	}
	if f.AgeUnknown > 0 {
		fmt.Fprintf(&b, "; %d already pending in a device's first report, released on an unknown date, counted neither on time nor due", f.AgeUnknown)
	}
	if f.Unlisted > 0 {
		fmt.Fprintf(&b, "; up to %d more pending were not listed (the agent lists at most 50 per report) and are not counted", f.Unlisted)
	}
	b.WriteString(".")
	return b.String()
}

// Window says the SLA in words: "14 days", or a duration.
func (f Figures) Window() string {
	switch {
	case f.Within == 24*time.Hour:
		return "1 day"
	case f.Within > 0 && f.Within%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", f.Within/(24*time.Hour))
	}
	return f.Within.String()
}

type key struct{ name, version string }

// staleIndex is how old a package index may be for a report's "none
// pending" to count (the default policy's max_index_age_days).
const staleIndex = 7 * 24 * time.Hour

func freshIndex(p evidence.PatchesPayload, at time.Time) bool {
	return p.Index != nil && p.Index.Refreshed != nil && at.Sub(*p.Index.Refreshed) <= staleIndex
}

type occurrence struct {
	item Item
	done bool
}

// Compute computes the figures of one device from its patches
// observations, in any order (other collectors' are ignored). from and to
// bound the period; within is the SLA. Observations after to are ignored;
// earlier ones are needed to know when updates pending in the period were
// first seen.
func Compute(obs []store.Observation, from, to time.Time, within time.Duration) (Figures, error) {
	if !from.Before(to) {
		return Figures{}, fmt.Errorf("period: from %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if within <= 0 {
		return Figures{}, fmt.Errorf("SLA window %s must be positive", within)
	}
	f := Figures{From: from, To: to, Within: within, Items: []Item{}}
	sorted := make([]store.Observation, 0, len(obs))
	for _, o := range obs {
		if o.Collector == evidence.Patches && !o.CollectedAt.After(to) {
			sorted = append(sorted, o)
		}
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].CollectedAt.Equal(sorted[j].CollectedAt) {
			return sorted[i].CollectedAt.Before(sorted[j].CollectedAt)
		}
		return sorted[i].Seq < sorted[j].Seq
	})

	open := map[key]*occurrence{}
	count := map[key]int{}
	var all []*occurrence
	first := true
	for _, o := range sorted {
		f.Observations++
		if o.Status != "ok" {
			f.Failed++
			continue
		}
		p, err := evidence.Decode[evidence.PatchesPayload](evidence.Patches, o.ParserVersion, o.Payload)
		if err != nil {
			f.Undecodable++
			continue
		}
		if p.Manager == "" {
			f.NoList++
			continue
		}
		truncated := p.PendingSecurityUpdates > len(p.PendingSecurity)
		if truncated {
			f.Truncated++
			if !o.CollectedAt.Before(from) {
				f.Unlisted = max(f.Unlisted, p.PendingSecurityUpdates-len(p.PendingSecurity))
			}
		}
		inFirst := first
		// The first report bounds the ages of what later reports list only
		// when it saw everything: a cut list leaves updates unnamed, and
		// "none pending" from a stale index may have missed them.
		first = inFirst && (truncated || p.PendingSecurityUpdates == 0 && !freshIndex(p, o.CollectedAt))
		listed := map[key]bool{}
		for _, pk := range p.PendingSecurity {
			k := key{pk.Name, pk.Version}
			listed[k] = true
			if open[k] != nil {
				continue
			}
			count[k]++
			oc := &occurrence{item: Item{Package: pk.Name, Version: pk.Version, Advisory: pk.Advisory, Severity: pk.Severity,
				Occurrence: count[k], FirstSeen: o.CollectedAt, FirstSeenSeq: o.Seq, InFirstReport: inFirst}}
			open[k] = oc
			all = append(all, oc)
		}
		if truncated {
			continue
		}
		for k, oc := range open {
			if !listed[k] {
				at := o.CollectedAt
				oc.item.Resolved, oc.item.ResolvedSeq, oc.done = &at, o.Seq, true
				delete(open, k)
			}
		}
	}

	for _, oc := range all {
		it := oc.item
		// In the period: first seen before its end, and not resolved
		// before its start.
		if it.FirstSeen.After(to) {
			continue
		}
		if it.Resolved != nil && it.Resolved.Before(from) {
			continue
		}
		end := to
		if it.Resolved != nil {
			end = *it.Resolved
		}
		it.Open = end.Sub(it.FirstSeen)
		it.Days = float64(it.Open) / float64(24*time.Hour)
		switch {
		case it.InFirstReport && it.Open <= within:
			it.Status = AgeUnknown
			f.AgeUnknown++
			if it.Resolved == nil {
				f.StillOpen++
			}
		case it.Resolved != nil && it.Open <= within:
			it.Status = OnTime
			f.ResolvedWithin++
		case it.Resolved != nil:
			it.Status = Late
			f.ResolvedLate++
		case it.Open > within:
			it.Status = OpenPastSLA
			f.StillOpen++
			f.OpenPastSLA++
		default:
			it.Status = Open
			f.StillOpen++
		}
		f.Updates++
		f.Items = append(f.Items, it)
	}
	f.percent()
	return f, nil
}

func (f *Figures) percent() {
	f.Due = f.ResolvedWithin + f.ResolvedLate + f.OpenPastSLA
	f.Percent = 100
	if f.Due > 0 {
		f.Percent = 100 * float64(f.ResolvedWithin) / float64(f.Due)
	}
}

// Merge adds up the figures of several devices (of the same period and
// SLA) into fleet figures.
func Merge(devices ...Figures) Figures {
	var f Figures
	f.Items = []Item{}
	for i, d := range devices {
		if i == 0 {
			f.From, f.To, f.Within = d.From, d.To, d.Within
		}
		f.Updates += d.Updates
		f.ResolvedWithin += d.ResolvedWithin
		f.ResolvedLate += d.ResolvedLate
		f.StillOpen += d.StillOpen
		f.OpenPastSLA += d.OpenPastSLA
		f.AgeUnknown += d.AgeUnknown
		f.Unlisted += d.Unlisted
		f.Observations += d.Observations
		f.Failed += d.Failed
		f.Undecodable += d.Undecodable
		f.NoList += d.NoList
		f.Truncated += d.Truncated
		f.Items = append(f.Items, d.Items...)
	}
	f.percent()
	return f
}

// History is the store access the figures need.
type History interface {
	// History returns up to limit observations of one collector, newest
	// first.
	History(ctx context.Context, deviceID, collector string, limit int) ([]store.Observation, error)
}

// MaxHistory bounds the observations read per device.
const MaxHistory = 100_000

// ForDevice computes one device's figures from the store, its items
// labelled with the device id. The history read is bounded by MaxHistory
// observations (newest first): beyond that, the oldest updates may be seen
// as first pending later than they were.
func ForDevice(ctx context.Context, h History, deviceID string, from, to time.Time, within time.Duration) (Figures, error) {
	obs, err := h.History(ctx, deviceID, evidence.Patches, MaxHistory)
	if err != nil {
		return Figures{}, fmt.Errorf("device %s: %w", deviceID, err)
	}
	f, err := Compute(obs, from, to, within)
	if err != nil {
		return Figures{}, err
	}
	for i := range f.Items {
		f.Items[i].Device = deviceID
	}
	return f, nil
}

// Fleet computes the figures of each device and their sum.
func Fleet(ctx context.Context, h History, deviceIDs []string, from, to time.Time, within time.Duration) (total Figures, perDevice map[string]Figures, err error) {
	perDevice = make(map[string]Figures, len(deviceIDs))
	all := make([]Figures, 0, len(deviceIDs))
	for _, id := range deviceIDs {
		f, err := ForDevice(ctx, h, id, from, to, within)
		if err != nil {
			return Figures{}, nil, err
		}
		perDevice[id] = f
		all = append(all, f)
	}
	total = Merge(all...)
	if len(all) == 0 {
		total.From, total.To, total.Within = from, to, within
	}
	return total, perDevice, nil
}
