package web

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/pct"
	"github.com/evident-dev/evident/server/report"
	"github.com/evident-dev/evident/server/store"
)

// Charts are computed here as plain geometry and drawn by the templates as
// inline SVG: no script, no external request.

// compliance is the fleet's compliance sampled once a day.
type compliance struct {
	Times []time.Time
	// Overall is the % of enrolled devices with no failing or unknown
	// control (no interval counts as unknown); -1 with no device enrolled.
	Overall []float64
	// PerControl is, per control, the % of in-scope devices passing; -1
	// with none in scope.
	Controls   []string
	PerControl [][]float64
}

// dailyCompliance is the overview's daily figures as chart input.
func dailyCompliance(o *report.Overview) compliance {
	c := compliance{PerControl: make([][]float64, len(o.Controls))}
	for _, ctl := range o.Controls {
		c.Controls = append(c.Controls, ctl.ID)
	}
	for _, d := range o.Days {
		c.Times = append(c.Times, d.At)
		c.Overall = append(c.Overall, d.CompliantPercent)
		for j := range c.Controls {
			c.PerControl[j] = append(c.PerControl[j], d.PassPercent[j])
		}
	}
	return c
}

// chart is a line chart's geometry.
type chart struct {
	W, H           int
	Left, Top      float64
	PlotW, PlotH   float64
	Right          float64
	Grid           []axisTick
	XTicks         []axisTick
	Series         []series
	Empty          bool
	LatestOverall  string
	FirstDay, Last string
}

type axisTick struct {
	X, Y  float64
	Label string
}

type series struct {
	Name   string
	Color  string
	Width  float64
	Points string
	Dots   []dot
	Latest string
}

type dot struct {
	X, Y  float64
	Title string
}

var palette = []string{"#1565c0", "#6a1b9a", "#00838f", "#ef6c00", "#ad1457", "#558b2f", "#4e342e", "#283593", "#00695c", "#9e9d24"}

func complianceChart(c compliance) chart {
	ch := chart{W: 760, H: 260, Left: 44, Top: 12}
	ch.PlotW, ch.PlotH = float64(ch.W)-ch.Left-16, float64(ch.H)-ch.Top-36
	ch.Right = ch.Left + ch.PlotW
	n := len(c.Times)
	if n == 0 {
		ch.Empty = true
		return ch
	}
	ch.FirstDay, ch.Last = c.Times[0].Format("2006-01-02"), c.Times[n-1].Format("2006-01-02")
	x := func(i int) float64 {
		if n == 1 {
			return ch.Left + ch.PlotW/2
		}
		return ch.Left + ch.PlotW*float64(i)/float64(n-1)
	}
	y := func(p float64) float64 { return ch.Top + ch.PlotH*(1-p/100) }
	for _, p := range []float64{0, 25, 50, 75, 100} {
		ch.Grid = append(ch.Grid, axisTick{X: ch.Left, Y: y(p), Label: fmt.Sprintf("%.0f%%", p)})
	}
	for i := 0; i < n; i += 7 {
		ch.XTicks = append(ch.XTicks, axisTick{X: x(i), Y: ch.Top + ch.PlotH + 16, Label: c.Times[i].Format("Jan 2")})
	}
	line := func(name, color string, width float64, vals []float64, dots bool) series {
		s := series{Name: name, Color: color, Width: width, Latest: "no data"}
		var pts []string
		for i, v := range vals {
			if v < 0 {
				continue
			}
			pts = append(pts, strconv.FormatFloat(x(i), 'f', 1, 64)+","+strconv.FormatFloat(y(v), 'f', 1, 64))
			if dots {
				s.Dots = append(s.Dots, dot{X: x(i), Y: y(v), Title: c.Times[i].Format("2006-01-02") + " " + name + ": " + pct.Format(v, 1) + "%"})
			}
			s.Latest = pct.Format(v, 1) + "%"
		}
		s.Points = strings.Join(pts, " ")
		return s
	}
	for j, id := range c.Controls {
		ch.Series = append(ch.Series, line(id, palette[j%len(palette)], 1.5, c.PerControl[j], false))
	}
	all := line("all controls (devices compliant)", "#111111", 3, c.Overall, true)
	ch.LatestOverall = all.Latest
	ch.Empty = all.Points == ""
	ch.Series = append(ch.Series, all)
	return ch
}

// Device timelines: one horizontal bar per control over [from, to].
const (
	timelineW = 640
	timelineH = 18
)

type segment struct {
	X, W  float64
	Fill  string
	Title string
}

func timeline(hist []store.ControlState, control string, from, to time.Time) []segment {
	span := to.Sub(from).Seconds()
	if span <= 0 {
		return nil
	}
	var out []segment
	for _, s := range hist {
		if s.ControlID != control {
			continue
		}
		start, end := s.Since, to
		if s.Until != nil {
			end = *s.Until
		}
		if !end.After(from) || !start.Before(to) {
			continue
		}
		if start.Before(from) {
			start = from
		}
		if end.After(to) {
			end = to
		}
		x := timelineW * start.Sub(from).Seconds() / span
		w := timelineW * end.Sub(start).Seconds() / span
		if w < 1 {
			w = 1
		}
		until := "now"
		if s.Until != nil {
			until = s.Until.UTC().Format("2006-01-02 15:04")
		}
		title := fmt.Sprintf("%s from %s to %s", statusLabel(s.Status), s.Since.UTC().Format("2006-01-02 15:04"), until)
		if s.Reason != "" {
			title += ": " + s.Reason
		}
		out = append(out, segment{X: x, W: w, Fill: statusColor(s.Status), Title: title})
	}
	return out
}

func timelineAxis(from, to time.Time) []axisTick {
	span := to.Sub(from).Seconds()
	var out []axisTick
	for i := 0; i <= 4; i++ {
		t := from.Add(time.Duration(float64(i) / 4 * span * float64(time.Second)))
		out = append(out, axisTick{X: timelineW * float64(i) / 4, Label: t.Format("Jan 2")})
	}
	return out
}
