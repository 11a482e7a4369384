package report

import (
	"context"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

// Overview is the fleet at a glance, from the store's aggregates: its cost
// does not grow with the fleet.
type Overview struct {
	GeneratedAt time.Time         `json:"generated_at"`
	Policy      string            `json:"policy"`
	Devices     int               `json:"devices_enrolled"`
	Compliant   int               `json:"devices_compliant"`
	Controls    []ControlOverview `json:"controls"`
	// Days are the daily figures, oldest first, when asked for.
	Days []DayOverview `json:"days,omitempty"`
}

// ControlOverview counts the devices in each status of one control. NoData
// counts devices with no recorded state of the control (a control added
// to the policy since they last reported); reports count them as unknown.
type ControlOverview struct {
	ID            string   `json:"id"`
	Title         string   `json:"title"`
	Criteria      []string `json:"criteria"`
	Pass          int      `json:"pass"`
	Fail          int      `json:"fail"`
	Unknown       int      `json:"unknown"`
	NotApplicable int      `json:"not_applicable"`
	NoData        int      `json:"no_data"`
	// InScope is every device but those the control does not apply to;
	// PassPercent is 100 × Pass / InScope (-1 with none in scope).
	InScope     int     `json:"in_scope"`
	PassPercent float64 `json:"pass_percent"`
}

// DayOverview is the fleet at the end of one UTC day (at now for today).
type DayOverview struct {
	At time.Time `json:"at"`
	// CompliantPercent is 100 × compliant / devices (-1 with none).
	CompliantPercent float64 `json:"compliant_percent"`
	// PassPercent is, per control of the policy in its order, the
	// control's pass percentage (-1 with none in scope).
	PassPercent []float64 `json:"pass_percent"`
}

// OverviewStore is what the overview reads.
type OverviewStore interface {
	FleetCounts(ctx context.Context) (store.FleetCounts, error)
	DailyCounts(ctx context.Context, from, to time.Time) ([]store.DayCounts, error)
}

// BuildOverview reads the fleet's aggregates as of now and, when days > 0,
// the daily figures of the last days (the last one is today, as of now).
func BuildOverview(ctx context.Context, st OverviewStore, p *controls.Policy, now time.Time, days int) (*Overview, error) {
	fc, err := st.FleetCounts(ctx)
	if err != nil {
		return nil, err
	}
	o := &Overview{GeneratedAt: now.UTC(), Policy: p.Name, Devices: fc.Devices, Compliant: fc.Compliant, Controls: controlCounts(p, fc)}
	if days <= 0 {
		return o, nil
	}
	today := now.UTC().Truncate(24 * time.Hour)
	series, err := st.DailyCounts(ctx, today.AddDate(0, 0, -(days-1)), today)
	if err != nil {
		return nil, err
	}
	for _, d := range series {
		at := d.Day.Add(24*time.Hour - time.Nanosecond)
		if at.After(now) {
			at, d.FleetCounts = now.UTC(), fc // today: as of now
		}
		day := DayOverview{At: at, CompliantPercent: percent(d.Compliant, d.Devices)}
		for _, c := range controlCounts(p, d.FleetCounts) {
			day.PassPercent = append(day.PassPercent, c.PassPercent)
		}
		o.Days = append(o.Days, day)
	}
	return o, nil
}

func controlCounts(p *controls.Policy, fc store.FleetCounts) []ControlOverview {
	out := make([]ControlOverview, 0, len(p.Controls))
	for _, pc := range p.Controls {
		n := fc.Controls[pc.ID]
		c := ControlOverview{ID: pc.ID, Title: pc.Title, Criteria: pc.Criteria,
			Pass: n[store.Pass], Fail: n[store.Fail], Unknown: n[store.Unknown], NotApplicable: n[store.NotApplicable]}
		c.NoData = max(0, fc.Devices-c.Pass-c.Fail-c.Unknown-c.NotApplicable)
		c.InScope = c.Pass + c.Fail + c.Unknown + c.NoData
		c.PassPercent = percent(c.Pass, c.InScope)
		out = append(out, c)
	}
	return out
}

func percent(n, of int) float64 {
	if of == 0 {
		return -1
	}
	return 100 * float64(n) / float64(of)
}
