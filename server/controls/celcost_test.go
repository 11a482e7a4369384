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
	// From the device's hostname: on a device with no data (the trial run
	// at load) it stays empty; on this one it grows.
	grow := "device.hostname"
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
			host := "laptop-1.example.com"
			if tt.name == "runaway growth" {
				host = "a"
			}
			got, err := p.eval(map[string]any{"device": &DeviceFacts{Hostname: host}})
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

// TestCELRunawayRefusedAtParse: an expression that exceeds the cost limit
// even on a device with no data is refused when the policy is loaded (so
// `policy check` shows it), as a group, a scope or a cel check.
func TestCELRunawayRefusedAtParse(t *testing.T) {
	grow := "''"
	for range 8 {
		grow += ".replace('', 'aaaaaaaaaa')"
	}
	for _, tt := range []struct{ name, policy string }{
		{"group", `{"version": 2, "name": "t", "groups": {"big": "size(` + grow + `) > 0"},
			"controls": [{"id": "C-1", "title": "t", "check": "disk_encryption"}]}`},
		{"applies_to", `{"version": 2, "name": "t",
			"controls": [{"id": "C-1", "title": "t", "check": "disk_encryption", "applies_to": "size(` + grow + `) > 0"}]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.policy))
			if err == nil || !strings.Contains(err.Error(), "exceeds the evaluation cost limit") {
				t.Fatalf("Parse = %v; want the runaway expression refused", err)
			}
		})
	}
	if _, err := Parse([]byte(`{"version": 2, "name": "t", "groups": {"web": "device.hostname.replace('.example.com', '').startsWith('web')"},
		"controls": [{"id": "C-1", "title": "t", "check": "disk_encryption"}]}`)); err != nil {
		t.Errorf("an ordinary replace refused: %v", err)
	}
}
