package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/atomicfile"
	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/oscal"
	"github.com/evident-dev/evident/server/period"
)

// parseDay accepts a date (2026-01-01, midnight UTC) or an RFC 3339 time.
func parseDay(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want a date (2026-01-31) or an RFC 3339 time (2026-01-31T12:00:00Z)", flag, s)
}

func cmdReportPeriod(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("report period", stderr, "evident-server report period: the SOC 2 Type II period report for [--from, --to): per control, the\n"+
		"devices in scope, the share of device-time compliant, every exception interval with its duration and\n"+
		"cause, devices that never reported, and a reproducible random sample (--seed) of devices with their\n"+
		"evidence. Reads the database read-only.")
	fromS := fs.String("from", "", "start of the period: a date (midnight UTC) or an RFC 3339 time (required)")
	toS := fs.String("to", "", "end of the period, exclusive (required)")
	format := fs.String("format", "text", "text, json, csv (one row per exception), summary-csv (one row per control) or oscal (OSCAL 1.0.6 assessment-results)")
	seed := fs.Int64("seed", 1, "seed of the device sample: the same seed gives the same sample")
	sample := fs.Int("sample", 25, "how many devices to sample")
	out := fs.String("out", "", "write to this file instead of standard output")
	var patchSLA controls.Duration
	patchSLA.Duration = period.DefaultPatchSLA
	fs.Var(&durationFlag{&patchSLA}, "patch-sla", "security-update SLA: the share of security updates applied within this long of first being seen pending\n(\"14d\", \"72h\"; 0 leaves the figures out)")
	policyPath := fs.String("policy", "", "control pack JSON file (default: the built-in pack)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *fromS == "" || *toS == "" {
		fmt.Fprintln(stderr, "report period needs --from and --to")
		return cli.ErrUsage
	}
	from, err := parseDay("from", *fromS)
	if err != nil {
		return err
	}
	to, err := parseDay("to", *toS)
	if err != nil {
		return err
	}
	if *sample < 0 || *sample > 10000 {
		return fmt.Errorf("--sample %d: want 0 to 10000", *sample)
	}
	write, ok := map[string]func(io.Writer, *period.Report) error{
		"text": period.WriteText, "json": period.WriteJSON, "csv": period.WriteCSV,
		"summary-csv": period.WriteSummaryCSV, "oscal": oscal.Write,
	}[strings.ToLower(*format)]
	if !ok {
		return fmt.Errorf("--format %q: want text, json, csv, summary-csv or oscal", *format)
	}
	policy, err := loadPolicy(*policyPath)
	if err != nil {
		return err
	}
	st, err := openExisting(dir, true)
	if err != nil {
		return err
	}
	defer st.Close()
	r, err := period.Build(context.Background(), st, policy, period.Options{From: from, To: to, Now: clock.Now(), Seed: *seed, SampleSize: *sample, PatchSLA: patchSLA.Duration})
	if err != nil {
		return err
	}
	if *out == "" {
		return write(stdout, r)
	}
	var b strings.Builder
	if err := write(&b, r); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "period report %s to %s written to %s (%s)\n", from.Format(time.RFC3339), to.Format(time.RFC3339), *out, *format)
	return nil
}

// durationFlag reads a flag as a policy duration ("72h", "14d", or "0").
type durationFlag struct{ d *controls.Duration }

func (f *durationFlag) String() string {
	if f.d == nil || f.d.Duration == 0 {
		return "0"
	}
	return f.d.String()
}

func (f *durationFlag) Set(s string) error {
	if s == "0" {
		f.d.Duration = 0
		return nil
	}
	return f.d.UnmarshalJSON([]byte(strconv.Quote(s)))
}
