package web

import (
	"strings"
	"testing"
	"time"
)

// TestChartRoundsLikeTheTables: the chart's legend and dot titles show a
// value with the digits the fleet table shows for it (rounded down), so
// the same figure never reads 77.7 in one place and 77.8 in another.
func TestChartRoundsLikeTheTables(t *testing.T) {
	pctOf := funcs["pct"].(func(float64) string)
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, v := range []float64{77.77, 99.96, 100.0 * 7 / 9, 0, 100} {
		c := compliance{Times: []time.Time{day0, day0.Add(24 * time.Hour)}, Overall: []float64{50, v},
			Controls: []string{"DC-FW-01"}, PerControl: [][]float64{{50, v}}}
		ch := complianceChart(c)
		want := pctOf(v)
		if ch.LatestOverall != want {
			t.Errorf("%v: legend %q, table %q", v, ch.LatestOverall, want)
		}
		for _, s := range ch.Series {
			if s.Latest != want {
				t.Errorf("%v: series %s latest %q, table %q", v, s.Name, s.Latest, want)
			}
			if n := len(s.Dots); n > 0 && !strings.HasSuffix(s.Dots[n-1].Title, ": "+want) {
				t.Errorf("%v: dot title %q, want it to end %q", v, s.Dots[n-1].Title, want)
			}
		}
	}
	if got := pctOf(77.77); got != "77.7%" {
		t.Errorf("pct(77.77) = %q, want 77.7%% (rounded down)", got)
	}
}
