// Package controls holds the control pack (a policy file: controls are data,
// so a customer can tune thresholds, scope controls to device groups and add
// controls without a new release) and evaluates it against a device's latest
// observations into pass, fail, unknown or not_applicable, with the evidence
// that decided each.
//
// # Policy file
//
// A policy is a JSON document (see default-policy.json, the built-in pack,
// and testdata/example-policy.json):
//
//	{
//	  "version": 2,
//	  "name": "Acme device controls",
//	  "groups": {
//	    "servers":     "device.os == 'linux' && device.hostname.startsWith('srv-')",
//	    "engineering": "device.hostname.startsWith('eng-')"
//	  },
//	  "controls": [
//	    {"id": "DC-FW-01", "title": "...", "criteria": ["CC6.6"], "check": "firewall", "max_age": "48h",
//	     "description": "why and how", "applies_to": "!('servers' in device.groups)", "grace": "3d"},
//	    {"id": "ACME-FW-02", "title": "nftables in use", "check": "cel", "max_age": "2d",
//	     "params": {"collector": "firewall", "pass": "payload.decided_by == 'nftables'",
//	                "reason_fail": "nftables does not decide inbound traffic"}}
//	  ]
//	}
//
// Version 1 is the original format (id, title, criteria, check, max_age,
// params, and a free-text description) and stays accepted unchanged. Version
// 2 adds groups, applies_to, grace and the cel check; a version 1 file that
// uses them is refused with a message asking for "version": 2, because a
// server older than version 2 would silently ignore applies_to and grace
// (unknown JSON fields) and score controls a customer had scoped out. A
// version 2 file is also decoded strictly: an unknown field (a typo such as
// "applies-to") is an error rather than ignored.
//
// Durations (max_age, grace) are Go durations ("48h", "90m") or a whole
// number of days ("14d").
//
// # Expressions
//
// Expressions are CEL (https://cel.dev), compiled and type-checked when the
// policy is parsed; a compile error names the control, the field and the
// position: `control X-1: params: pass: ERROR: <input>:1:1: undeclared
// reference to 'payloadd'`. Every expression must be a bool, at most
// MaxExpressionLength characters, and its evaluation stops (the control is
// then unknown) past MaxExpressionCost. The standard CEL library plus the
// strings extension (lowerAscii, split, ...) is available.
//
// The variable device has the fields os ("linux", "darwin", "windows"),
// hostname, os_version (strings) and groups (list of strings). Without
// device facts (Input.Device nil) they are empty.
//
//   - groups: named expressions over device.os, device.hostname and
//     device.os_version (not device.groups: a group is not defined by
//     groups). device.groups is the sorted list of the names of the groups
//     that match, plus any groups the caller already put in
//     Input.Device.Groups.
//   - applies_to (per control): whether the control is in scope. False makes
//     the control not_applicable with the reason "out of scope: <expr>".
//     A group named in `'name' in device.groups` must be defined.
//   - the cel check: params collector (whose latest observation is judged,
//     with the usual missing / failed / stale handling), pass (required),
//     not_applicable (optional, tested first), and optional reason_pass,
//     reason_fail and reason_not_applicable. Its expressions also see payload
//     (the collector's JSON payload: maps, lists, strings, bools, and numbers
//     as doubles; a missing key is an evaluation error, so guard with
//     has(payload.x)), observation (collector, seq, collected_at as a
//     timestamp, status) and now (the evaluation time). An evaluation error
//     makes the control unknown with the error as the reason.
//
// # Grace periods
//
// grace gives a newly failing device time to remediate. The status stays
// fail (what the evidence says is not softened), but the Result carries
// InGrace and GraceUntil and the reason says "(within the 72h grace period
// until T)". A control is failing since the start of its open fail interval
// (Input.Current), or since now when it was not failing before. Reports
// decide what in-grace fail time means; the period report does not count it
// as an exception. See Control.GraceFor.
package controls

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/evident-dev/evident/internal/safetext"
)

//go:embed default-policy.json
var defaultPolicy []byte

// Policy is a control pack.
type Policy struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Groups are named CEL expressions over the device deciding group
	// membership (version 2).
	Groups   map[string]string `json:"groups,omitempty"`
	Controls []Control         `json:"controls"`
	// Collection is the agents' collection schedule, pushed to each
	// device over its stream (version 2); nil leaves every agent its own.
	Collection *Collection `json:"collection,omitempty"`

	// groups is Groups compiled by Parse.
	groups []compiledGroup
}

// Control is one device control.
type Control struct {
	ID          string          `json:"id"`
	Title       string          `json:"title"`
	Description string          `json:"description,omitempty"`
	Criteria    []string        `json:"criteria"` // SOC 2 trust services criteria
	Check       string          `json:"check"`    // evaluator name
	MaxAge      Duration        `json:"max_age"`  // evidence older than this is "unknown"
	Params      json.RawMessage `json:"params,omitempty"`
	// AppliesTo is a CEL expression over the device: false makes the
	// control not_applicable (version 2).
	AppliesTo string `json:"applies_to,omitempty"`
	// Grace is how long a newly failing control is reported as within its
	// grace period (version 2).
	Grace Duration `json:"grace,omitzero"`
	// Remediation says how to fix a failing or unknown control, by OS
	// ("linux", "darwin", "windows"), with "default" for the others. It is
	// data: an organisation's policy replaces the default pack's texts
	// with its own (its software, its MDM). Shown on the device page, in
	// posture reports and exports.
	Remediation map[string]string `json:"remediation,omitempty"`

	// Set by Parse: the check with its params, and AppliesTo compiled.
	eval  evaluator
	scope *program
}

// maxRemediationBytes bounds one remediation text.
const maxRemediationBytes = 1024

// RemediationFor is how to fix c on goos: its own text, else the default,
// else "".
func (c Control) RemediationFor(goos string) string {
	if t, ok := c.Remediation[goos]; ok {
		return t
	}
	return c.Remediation["default"]
}

// Duration is a time.Duration spelled "48h" or "14d" in JSON.
type Duration struct{ time.Duration }

var daysRE = regexp.MustCompile(`^([0-9]{1,5})d$`)

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"48h\" or \"14d\": %w", err)
	}
	var v time.Duration
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		v = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if v, err = time.ParseDuration(s); err != nil {
			return err
		}
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

// DefaultJSON is the built-in control pack's source.
func DefaultJSON() []byte { return bytes.Clone(defaultPolicy) }

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

// maxProblems bounds the problems one Parse reports.
const maxProblems = 100

// Problems is every problem Parse found in a policy, in file order. Its
// Error is one problem per line.
type Problems []error

func (p Problems) Error() string {
	s := make([]string, len(p))
	for i, e := range p {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (p Problems) Unwrap() []error { return p }

// Parse decodes and validates a policy. Every problem is reported (up to a
// hundred), as Problems; a file that is not JSON, too large, or of an
// unsupported version stops at that one problem.
func Parse(b []byte) (*Policy, error) {
	if len(b) > maxPolicyBytes {
		return nil, fmt.Errorf("policy is larger than %d bytes", maxPolicyBytes)
	}
	var p Policy
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	switch p.Version {
	case 1:
	case 2:
		// Strict: a typo in a field name must not silently drop a scope or
		// a grace period.
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var strict Policy
		if err := dec.Decode(&strict); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unsupported policy version %d (want 1 or 2)", p.Version)
	}
	var probs Problems
	add := func(err error) {
		if len(probs) < maxProblems {
			probs = append(probs, err)
		} else if len(probs) == maxProblems {
			probs = append(probs, errors.New("too many problems; stopped"))
		}
	}
	needV2 := func(what string) {
		add(fmt.Errorf("%s needs \"version\": 2 (version 1 servers would ignore it)", what))
	}
	if p.Version < 2 && len(p.Groups) > 0 {
		needV2("groups")
	}
	var errs []error
	p.groups, errs = compileGroups(p.Groups)
	for _, e := range errs {
		add(e)
	}
	if p.Collection != nil {
		if p.Version < 2 {
			needV2("collection")
		}
		for _, e := range p.Collection.check(p.Groups) {
			add(e)
		}
	}
	seen := map[string]bool{}
	for i := range p.Controls {
		c := &p.Controls[i]
		name := c.ID
		switch {
		case c.ID == "":
			add(fmt.Errorf("control %d: id is empty", i))
			name = strconv.Itoa(i)
		case seen[c.ID]:
			add(fmt.Errorf("control %s: defined twice", c.ID))
		}
		seen[c.ID] = true
		if c.MaxAge.Duration == 0 {
			c.MaxAge.Duration = 48 * time.Hour
		}
		if p.Version < 2 {
			if c.AppliesTo != "" {
				needV2("control " + name + ": applies_to")
			}
			if c.Grace.Duration != 0 {
				needV2("control " + name + ": grace")
			}
			if c.Check == "cel" {
				needV2("control " + name + ": check \"cel\"")
			}
		}
		if c.AppliesTo != "" {
			prog, err := compileExpr(scopeExpr, c.AppliesTo)
			if err != nil {
				add(fmt.Errorf("control %s: applies_to: %w", name, err))
			} else {
				c.scope = prog
				for _, g := range groupsReferenced(c.AppliesTo) {
					if _, ok := p.Groups[g]; !ok {
						add(fmt.Errorf("control %s: applies_to: group %q is not defined in groups", name, g))
					}
				}
			}
		}
		for os, text := range c.Remediation {
			switch {
			case os != "linux" && os != "darwin" && os != "windows" && os != "default":
				add(fmt.Errorf("control %s: remediation: unknown OS %q (want linux, darwin, windows or default)", name, os))
			case strings.TrimSpace(text) == "" || len(text) > maxRemediationBytes || !utf8.ValidString(text) || !safetext.Printable(text):
				add(fmt.Errorf("control %s: remediation for %s: want 1 to %d bytes of printable text", name, os, maxRemediationBytes))
			}
		}
		mk := checks[c.Check]
		if mk == nil {
			add(fmt.Errorf("control %s: unknown check %q", name, c.Check))
			continue
		}
		eval, err := mk(c.Params)
		if err != nil {
			add(fmt.Errorf("control %s: params: %w", name, err))
			continue
		}
		c.eval = eval
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return &p, nil
}
