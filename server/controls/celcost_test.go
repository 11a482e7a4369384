package controls

import (
	"strings"
	"testing"
)

// TestCELStringGrowthBounded: a short chain of replace calls, each growing
// the string tenfold, stops at the cost limit (the fifth step's 100 KB)
// instead of going on (seven steps make 10 MB here, small enough for the
// test to show the defence missing; two more would be gigabytes); an
// ordinary replace still evaluates.
func TestCELStringGrowthBounded(t *testing.T) {
	grow := "'a'"
	for range 7 {
		grow += ".replace('a', 'aaaaaaaaaa')"
	}
	for _, tt := range []struct {
		name, src string
		want      bool
		err       string
	}{
		{"runaway growth", "size(" + grow + ") > 0", false, "cost limit"},
		{"ordinary replace", "device.hostname.replace('.example.com', '') == 'laptop-1'", true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := compileExpr(scopeExpr, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.eval(map[string]any{"device": &DeviceFacts{Hostname: "laptop-1.example.com"}})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("eval = %v, %v; want an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("eval = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
