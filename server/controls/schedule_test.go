package controls

import (
	"maps"
	"strings"
	"testing"
	"time"
)

// policyWith is a version-2 policy of one control, with the given groups
// and collection section (JSON).
func policyWith(groups, collection string) string {
	return `{"version": 2, "name": "t", "groups": ` + groups + `, "collection": ` + collection + `,
		"controls": [{"id": "DC-ENC-01", "title": "t", "check": "disk_encryption"}]}`
}

// TestScheduleFor: a device gets the default schedule shortened by each of
// its groups', per collector; a policy without one sets none.
func TestScheduleFor(t *testing.T) {
	groups := `{"servers": "device.os == 'linux'", "laptops": "device.os == 'darwin'", "fast": "device.hostname.startsWith('ci-')"}`
	collection := `{"interval": "1h", "collectors": {"packages": "6h"},
		"groups": {"servers": {"interval": "15m", "collectors": {"packages": "2h", "firewall": "5m"}},
		           "fast": {"interval": "30m", "collectors": {"packages": "12h", "firewall": "1m"}}}}`
	p, err := Parse([]byte(policyWith(groups, collection)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		facts      DeviceFacts
		interval   time.Duration
		collectors map[string]time.Duration
	}{
		{"default", DeviceFacts{OS: "windows", Hostname: "pc-1"}, time.Hour, map[string]time.Duration{"packages": 6 * time.Hour}},
		{"a group with nothing for it", DeviceFacts{OS: "darwin", Hostname: "mac-1"}, time.Hour, map[string]time.Duration{"packages": 6 * time.Hour}},
		{"one group", DeviceFacts{OS: "linux", Hostname: "web-1"}, 15 * time.Minute, map[string]time.Duration{"packages": 2 * time.Hour, "firewall": 5 * time.Minute}},
		{"two groups: the shortest of each", DeviceFacts{OS: "linux", Hostname: "ci-7"}, 15 * time.Minute, map[string]time.Duration{"packages": 2 * time.Hour, "firewall": time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := p.ScheduleFor(&tt.facts)
			got := map[string]time.Duration{}
			for c, d := range s.Collectors {
				got[c] = d.Duration
			}
			if s.Interval.Duration != tt.interval || !maps.Equal(got, tt.collectors) {
				t.Errorf("ScheduleFor(%+v) = %s %v; want %s %v", tt.facts, s.Interval.Duration, got, tt.interval, tt.collectors)
			}
		})
	}
	if s := Default().ScheduleFor(&DeviceFacts{OS: "linux"}); s != nil {
		t.Errorf("the default policy sets a schedule: %+v", s)
	}
}

// TestScheduleRefused: a schedule out of bounds, for an unknown group, or in
// a version-1 policy is refused by name.
func TestScheduleRefused(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{"interval too short", policyWith(`{}`, `{"interval": "500ms"}`), "interval 500ms is outside"},
		{"collector interval too long", policyWith(`{}`, `{"collectors": {"packages": "30d"}}`), "collector packages interval 720h0m0s is outside"},
		{"unknown group", policyWith(`{}`, `{"groups": {"nope": {"interval": "5m"}}}`), `group "nope" is not defined`},
		{"not a duration", policyWith(`{}`, `{"interval": "soon"}`), "soon"},
		{"version 1", strings.Replace(policyWith(`{}`, `{"interval": "5m"}`), `"version": 2`, `"version": 1`, 1), `collection needs "version": 2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.policy))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
