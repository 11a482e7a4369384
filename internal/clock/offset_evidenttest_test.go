//go:build evidenttest

package clock

import (
	"strings"
	"testing"
	"time"
)

func TestParseOffset(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"", 0, ""},
		{"9600h", 9600 * time.Hour, ""},
		{"-72h30m", -(72*time.Hour + 30*time.Minute), ""},
		{"400d", 0, "not a Go duration"},
		{"soon", 0, OffsetEnv},
	} {
		got, err := parseOffset(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseOffset(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseOffset(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
