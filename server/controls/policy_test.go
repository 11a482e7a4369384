package controls_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/controls"
)

func TestDefault(t *testing.T) {
	p := controls.Default() // panics if the embedded policy is invalid
	want := []struct {
		id       string
		check    string
		criteria []string
	}{
		{"DC-ENC-01", "disk_encryption", []string{"CC6.1", "CC6.7"}},
		{"DC-PATCH-01", "security_patches", []string{"CC7.1", "CC8.1"}},
		{"DC-PATCH-02", "auto_updates", []string{"CC7.1"}},
		{"DC-FW-01", "firewall", []string{"CC6.6"}},
		{"DC-BOOT-01", "secure_boot", []string{"CC6.8", "CC7.1"}},
		{"DC-TPM-01", "tpm", []string{"CC6.1"}},
		{"DC-MAL-01", "antimalware", []string{"CC6.8"}},
		{"DC-LOCK-01", "screen_lock", []string{"CC6.1"}},
		{"DC-AGENT-01", "agent_fresh", []string{"CC7.2"}},
	}
	if p.Version != 1 || p.Name == "" {
		t.Errorf("version %d, name %q", p.Version, p.Name)
	}
	if len(p.Controls) != len(want) {
		t.Fatalf("default policy has %d controls, want %d", len(p.Controls), len(want))
	}
	for i, w := range want {
		c := p.Controls[i]
		if c.ID != w.id || c.Check != w.check || !slices.Equal(c.Criteria, w.criteria) {
			t.Errorf("control %d = %s (%s, %v), want %s (%s, %v)", i, c.ID, c.Check, c.Criteria, w.id, w.check, w.criteria)
		}
		if c.Title == "" {
			t.Errorf("%s has no title", c.ID)
		}
		wantAge := 48 * time.Hour
		if c.ID == "DC-AGENT-01" {
			wantAge = 24 * time.Hour
		}
		if c.MaxAge.Duration != wantAge {
			t.Errorf("%s max_age = %s, want %s", c.ID, c.MaxAge, wantAge)
		}
	}
}

// policy wraps controls JSON into a version 1 policy document.
func policy(controlsJSON string) string {
	return `{"version": 1, "name": "test", "controls": [` + controlsJSON + `]}`
}

func TestParse(t *testing.T) {
	// A policy just over the limit that would otherwise be valid.
	big := policy(`{"id": "A", "check": "firewall"}`)
	big = big[:len(big)-1] + strings.Repeat(" ", 1<<20) + "}"

	tests := []struct {
		name    string
		in      string
		wantErr string // empty: valid
	}{
		{name: "minimal", in: policy(`{"id": "A", "check": "firewall"}`)},
		{name: "no controls", in: policy(``)},
		{name: "empty params on no-params check", in: policy(`{"id": "A", "check": "secure_boot", "params": {}}`)},
		{name: "null params on no-params check", in: policy(`{"id": "A", "check": "secure_boot", "params": null}`)},
		{name: "max_days zero", in: policy(`{"id": "A", "check": "security_patches", "params": {"max_days": 0}}`)},
		{name: "tpm params", in: policy(`{"id": "A", "check": "tpm", "params": {"require_attestation": false}}`)},

		{name: "not JSON", in: `version: 1`, wantErr: "invalid character"},
		{name: "version 0", in: `{"version": 0, "controls": []}`, wantErr: "unsupported policy version 0"},
		{name: "version missing", in: `{"controls": []}`, wantErr: "unsupported policy version 0"},
		{name: "version 3", in: `{"version": 3, "controls": []}`, wantErr: "unsupported policy version 3"},
		{name: "duplicate id", in: policy(`{"id": "A", "check": "firewall"}, {"id": "A", "check": "tpm"}`), wantErr: "control A: defined twice"},
		{name: "empty id", in: policy(`{"id": "A", "check": "firewall"}, {"check": "tpm"}`), wantErr: "control 1: id is empty"},
		{name: "unknown check", in: policy(`{"id": "A", "check": "antivirus"}`), wantErr: `unknown check "antivirus"`},
		{name: "missing check", in: policy(`{"id": "A"}`), wantErr: `unknown check ""`},
		{name: "max_age not a duration", in: policy(`{"id": "A", "check": "firewall", "max_age": "two days"}`), wantErr: "invalid duration"},
		{name: "max_age a number", in: policy(`{"id": "A", "check": "firewall", "max_age": 48}`), wantErr: "duration must be a string"},
		{name: "max_age negative", in: policy(`{"id": "A", "check": "firewall", "max_age": "-1h"}`), wantErr: "must be positive"},
		{name: "max_age zero", in: policy(`{"id": "A", "check": "firewall", "max_age": "0s"}`), wantErr: "must be positive"},
		{name: "unknown params field", in: policy(`{"id": "A", "check": "security_patches", "params": {"max_dayz": 7}}`), wantErr: `unknown field "max_dayz"`},
		{name: "params wrong type", in: policy(`{"id": "A", "check": "security_patches", "params": {"max_days": "7"}}`), wantErr: "control A: params"},
		{name: "negative max_days", in: policy(`{"id": "A", "check": "security_patches", "params": {"max_days": -1}}`), wantErr: "max_days must not be negative"},
		{name: "unknown tpm param", in: policy(`{"id": "A", "check": "tpm", "params": {"require_quote": true}}`), wantErr: `unknown field "require_quote"`},
		{name: "params on a no-params check", in: policy(`{"id": "A", "check": "secure_boot", "params": {"strict": true}}`), wantErr: "takes no params"},
		{name: "array params on a no-params check", in: policy(`{"id": "A", "check": "agent_fresh", "params": []}`), wantErr: "takes no params"},
		{name: "larger than 1 MiB", in: big, wantErr: "larger than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := controls.Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse succeeded, want error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %q, want it to contain %q", err, tt.wantErr)
				}
				if p != nil {
					t.Errorf("Parse returned a policy alongside an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, c := range p.Controls {
				if c.MaxAge.Duration != 48*time.Hour {
					t.Errorf("%s: max_age defaulted to %s, want 48h", c.ID, c.MaxAge)
				}
			}
		})
	}
}

func TestParseJustUnderLimit(t *testing.T) {
	in := policy(`{"id": "A", "check": "firewall"}`)
	in = in[:len(in)-1] + strings.Repeat(" ", 1<<20-len(in)) + "}"
	if len(in) != 1<<20 {
		t.Fatalf("test input is %d bytes", len(in))
	}
	if _, err := controls.Parse([]byte(in)); err != nil {
		t.Fatalf("Parse of exactly 1 MiB: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(policy(`{"id": "A", "check": "tpm", "max_age": "1h30m"}`)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version": 3}`), 0o600); err != nil {
		t.Fatal(err)
	}

	p, err := controls.Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(p.Controls) != 1 || p.Controls[0].MaxAge.Duration != 90*time.Minute {
		t.Errorf("Load = %+v", p.Controls)
	}
	if _, err := controls.Load(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "version 3") {
		t.Errorf("Load(bad) = %v, want an error naming the file and the version", err)
	}
	if _, err := controls.Load(filepath.Join(dir, "missing.json")); !os.IsNotExist(err) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
}

func TestDurationJSON(t *testing.T) {
	d := controls.Duration{Duration: 36 * time.Hour}
	b, err := d.MarshalJSON()
	if err != nil || string(b) != `"36h0m0s"` {
		t.Fatalf("MarshalJSON = %s, %v", b, err)
	}
	var back controls.Duration
	if err := back.UnmarshalJSON(b); err != nil || back != d {
		t.Fatalf("UnmarshalJSON(%s) = %v, %v", b, back, err)
	}
}

// TestRemediation: how to fix a control is policy data, by OS with a
// default; the default pack says it for every control on each OS; bad
// texts are refused when the policy is read.
func TestRemediation(t *testing.T) {
	p, err := controls.Parse([]byte(policy(`{"id": "A", "check": "firewall", "remediation": {"linux": "ufw enable", "default": "turn the firewall on"}}`)))
	if err != nil {
		t.Fatal(err)
	}
	for goos, want := range map[string]string{"linux": "ufw enable", "windows": "turn the firewall on", "plan9": "turn the firewall on"} {
		if got := p.Controls[0].RemediationFor(goos); got != want {
			t.Errorf("RemediationFor(%s) = %q, want %q", goos, got, want)
		}
	}
	if got := (controls.Control{}).RemediationFor("linux"); got != "" {
		t.Errorf("no remediation: %q", got)
	}
	for _, c := range controls.Default().Controls {
		for _, goos := range []string{"linux", "darwin", "windows"} {
			if c.RemediationFor(goos) == "" {
				t.Errorf("default policy: %s says nothing of how to fix it on %s", c.ID, goos)
			}
		}
	}
	for name, tc := range map[string]struct{ remediation, want string }{
		"unknown OS":    {`{"macos": "x"}`, `remediation: unknown OS "macos"`},
		"empty":         {`{"linux": "  "}`, "remediation for linux: want 1 to 1024 bytes"},
		"too long":      {`{"linux": "` + strings.Repeat("x", 1025) + `"}`, "remediation for linux: want 1 to 1024 bytes"},
		"control chars": {`{"windows": "run \u001b[2Jthis"}`, "remediation for windows: want 1 to 1024 bytes of printable text"},
	} {
		_, err := controls.Parse([]byte(policy(`{"id": "A", "check": "firewall", "remediation": ` + tc.remediation + `}`)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}
