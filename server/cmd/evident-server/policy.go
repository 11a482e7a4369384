package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/server/controls"
)

// cmdPolicyCheck validates a policy file before it is applied: exit 0 with
// a summary and what differs from the built-in pack, or 1 listing every
// problem found.
func cmdPolicyCheck(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("policy check", stderr, "evident-server policy check FILE: parse and validate a control pack (policy file) before it is\n"+
		"applied with `run --policy FILE`: JSON, version, checks and their params, and every CEL expression\n"+
		"(groups, applies_to, cel checks) compiled and type-checked. Prints a summary and the differences from\n"+
		"the built-in pack and exits 0, or prints every problem found and exits 1. --data-dir is not used.")
	// The path may come before or after the flags.
	path, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if path == "" {
		fmt.Fprintln(stderr, "usage: evident-server policy check FILE")
		return cli.ErrUsage
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	p, err := controls.Parse(b)
	if err != nil {
		var probs controls.Problems
		if !errors.As(err, &probs) {
			probs = controls.Problems{err}
		}
		fmt.Fprintf(stderr, "%s: %d problem%s:\n", path, len(probs), plural(len(probs)))
		for _, e := range probs {
			fmt.Fprintln(stderr, "  "+strings.ReplaceAll(e.Error(), "\n", "\n  "))
		}
		return fmt.Errorf("policy %s is not valid", path)
	}
	writePolicySummary(stdout, path, p, controls.Default())
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// writePolicySummary prints what a valid policy holds and how it differs
// from base.
func writePolicySummary(w io.Writer, path string, p, base *controls.Policy) {
	fmt.Fprintf(w, "%s: valid (version %d) %q\n", path, p.Version, p.Name)
	checks := map[string]int{}
	var scoped, grace []string
	for _, c := range p.Controls {
		checks[c.Check]++
		if c.AppliesTo != "" {
			scoped = append(scoped, fmt.Sprintf("%s: %s", c.ID, c.AppliesTo))
		}
		if c.Grace.Duration > 0 {
			grace = append(grace, fmt.Sprintf("%s %s", c.ID, shortDuration(c.Grace.Duration)))
		}
	}
	names := make([]string, 0, len(checks))
	for n, k := range checks {
		names = append(names, fmt.Sprintf("%s×%d", n, k))
	}
	sort.Strings(names)
	fmt.Fprintf(w, "  controls: %d\n  checks:   %s\n", len(p.Controls), orNone(strings.Join(names, ", ")))
	groups := make([]string, 0, len(p.Groups))
	for g := range p.Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	fmt.Fprintf(w, "  groups:   %s\n", orNone(strings.Join(groups, ", ")))
	for _, g := range groups {
		fmt.Fprintf(w, "    %s: %s\n", g, p.Groups[g])
	}
	fmt.Fprintf(w, "  scoped:   %d controls\n", len(scoped))
	for _, s := range scoped {
		fmt.Fprintf(w, "    %s\n", s)
	}
	fmt.Fprintf(w, "  grace:    %s\n", orNone(strings.Join(grace, ", ")))

	added, removed, changed := diffPolicies(base, p)
	fmt.Fprintln(w, "compared with the built-in pack:")
	fmt.Fprintf(w, "  added:    %s\n", orNone(strings.Join(added, ", ")))
	fmt.Fprintf(w, "  removed:  %s\n", orNone(strings.Join(removed, ", ")))
	if len(changed) == 0 {
		fmt.Fprintln(w, "  changed:  none")
	} else {
		fmt.Fprintln(w, "  changed:")
		for _, c := range changed {
			fmt.Fprintf(w, "    %s\n", c)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// diffPolicies lists control ids added to and removed from base, and the
// controls changed with the fields that differ.
func diffPolicies(base, p *controls.Policy) (added, removed, changed []string) {
	old := map[string]controls.Control{}
	for _, c := range base.Controls {
		old[c.ID] = c
	}
	seen := map[string]bool{}
	for _, c := range p.Controls {
		seen[c.ID] = true
		o, ok := old[c.ID]
		if !ok {
			added = append(added, c.ID)
			continue
		}
		var fields []string
		if o.Title != c.Title {
			fields = append(fields, "title")
		}
		if !slices.Equal(o.Criteria, c.Criteria) {
			fields = append(fields, fmt.Sprintf("criteria %v → %v", o.Criteria, c.Criteria))
		}
		if o.Check != c.Check {
			fields = append(fields, fmt.Sprintf("check %s → %s", o.Check, c.Check))
		}
		if o.MaxAge != c.MaxAge {
			fields = append(fields, fmt.Sprintf("max_age %s → %s", shortDuration(o.MaxAge.Duration), shortDuration(c.MaxAge.Duration)))
		}
		if op, np := compactJSON(o.Params), compactJSON(c.Params); op != np {
			fields = append(fields, fmt.Sprintf("params %s → %s", orNone(op), orNone(np)))
		}
		if o.AppliesTo != c.AppliesTo {
			fields = append(fields, fmt.Sprintf("applies_to %s → %s", orNone(o.AppliesTo), orNone(c.AppliesTo)))
		}
		if o.Grace != c.Grace {
			fields = append(fields, fmt.Sprintf("grace %s → %s", shortDuration(o.Grace.Duration), shortDuration(c.Grace.Duration)))
		}
		if len(fields) > 0 {
			changed = append(changed, c.ID+": "+strings.Join(fields, "; "))
		}
	}
	for _, c := range base.Controls {
		if !seen[c.ID] {
			removed = append(removed, c.ID)
		}
	}
	return added, removed, changed
}

// shortDuration spells 72h as "72h", not "72h0m0s", and no duration as
// "none".
func shortDuration(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
		return ""
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
