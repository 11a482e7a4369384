package pct_test

import (
	"testing"

	"github.com/evident-dev/evident/internal/pct"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		v        float64
		decimals int
		want     string
	}{
		{77.77, 1, "77.7"}, // to nearest would say 77.8
		{77.77, 2, "77.77"},
		{77.799, 2, "77.79"},
		{99.96, 1, "99.9"}, // any exception stays under 100
		{99.999, 2, "99.99"},
		{100, 1, "100.0"},
		{0, 1, "0.0"},
		{100.0 * 7 / 9, 1, "77.7"},
		{100.0 * 1 / 3 * 3, 2, "100.00"}, // a float hair under 100 is 100
		{12.5, 0, "12"},
	} {
		if got := pct.Format(tc.v, tc.decimals); got != tc.want {
			t.Errorf("Format(%v, %d) = %q, want %q", tc.v, tc.decimals, got, tc.want)
		}
	}
}
