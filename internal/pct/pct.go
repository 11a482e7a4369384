// Package pct is the one way Evident shows a share as a percentage:
// rounded down (floor), never to nearest. A control with any exception
// therefore never shows 100, and one value shows the same leading digits
// on every page, chart, text report and export, whatever their number of
// decimals (a table's 77.7 is a CSV's 77.79, never a legend's 77.8). A
// share of nothing (no device in scope) has no percentage: it shows as
// NA, never as 0.
package pct

import (
	"math"
	"strconv"
)

// NA stands for the percentage of an empty population.
const NA = "n/a"

// Floor rounds v down to decimals places. A value a hair under a
// boundary because of float arithmetic (99.99999999 for 100) is taken as
// the boundary, so an exact share is not shown one unit low.
func Floor(v float64, decimals int) float64 {
	scale := math.Pow(10, float64(decimals))
	x := v * scale
	if r := math.Round(x); math.Abs(x-r) < 1e-6 {
		return r / scale
	}
	return math.Floor(x) / scale
}

// Format shows v rounded down to decimals places, without a sign.
func Format(v float64, decimals int) string {
	return strconv.FormatFloat(Floor(v, decimals), 'f', decimals, 64)
}
