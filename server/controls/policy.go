// Package controls holds the control pack (a policy file: controls are data,
// so a customer can tune thresholds without a new release) and evaluates it
// against a device's latest observations into pass, fail, unknown or
// not_applicable, with the evidence that decided each.
package controls

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

//go:embed default-policy.json
var defaultPolicy []byte

// Policy is a control pack.
type Policy struct {
	Version  int       `json:"version"`
	Name     string    `json:"name"`
	Controls []Control `json:"controls"`
}

// Control is one device control.
type Control struct {
	ID       string          `json:"id"`
	Title    string          `json:"title"`
	Criteria []string        `json:"criteria"` // SOC 2 trust services criteria
	Check    string          `json:"check"`    // evaluator name
	MaxAge   Duration        `json:"max_age"`  // evidence older than this is "unknown"
	Params   json.RawMessage `json:"params,omitempty"`
}

// Duration is a time.Duration spelled "48h" in JSON.
type Duration struct{ time.Duration }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"48h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("duration %q must be positive", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Default returns the built-in control pack.
func Default() *Policy {
	p, err := Parse(defaultPolicy)
	if err != nil {
		panic("embedded default policy is invalid: " + err.Error()) // caught by tests
	}
	return p
}

// Load reads a policy file.
func Load(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// maxPolicyBytes bounds a policy file.
const maxPolicyBytes = 1 << 20

// Parse decodes and validates a policy.
func Parse(b []byte) (*Policy, error) {
	if len(b) > maxPolicyBytes {
		return nil, fmt.Errorf("policy is larger than %d bytes", maxPolicyBytes)
	}
	var p Policy
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	if p.Version != 1 {
		return nil, fmt.Errorf("unsupported policy version %d (want 1)", p.Version)
	}
	seen := map[string]bool{}
	for i, c := range p.Controls {
		switch {
		case c.ID == "":
			return nil, fmt.Errorf("control %d: id is empty", i)
		case seen[c.ID]:
			return nil, fmt.Errorf("control %s: defined twice", c.ID)
		case checks[c.Check] == nil:
			return nil, fmt.Errorf("control %s: unknown check %q", c.ID, c.Check)
		}
		if c.MaxAge.Duration == 0 {
			p.Controls[i].MaxAge.Duration = 48 * time.Hour
		}
		if _, err := checks[c.Check](c.Params); err != nil {
			return nil, fmt.Errorf("control %s: params: %w", c.ID, err)
		}
		seen[c.ID] = true
	}
	return &p, nil
}
