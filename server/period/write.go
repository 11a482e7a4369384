package period

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/evident-dev/evident/internal/pct"
	"github.com/evident-dev/evident/internal/safetext"
)

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(safetext.JSONWriter(w))
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"control_id", "control_title", "criteria", "device_id", "hostname", "status",
	"start", "end", "duration_seconds", "open", "cause", "waived", "waiver_id", "approver"}

// SummaryCSVHeader is the header row of WriteSummaryCSV.
var SummaryCSVHeader = []string{"control_id", "control_title", "criteria", "population", "in_scope_seconds",
	"compliant_seconds", "compliant_percent", "devices_always_compliant", "exceptions", "waived_seconds",
	"compliant_or_waived_percent", "grace", "in_grace_seconds"}

// WriteCSV writes one row per exception, controls in policy order; criteria
// are separated by semicolons. Waived exceptions are listed like the others,
// with waived true and their waiver and approver.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(safetext.CSVRow(CSVHeader)); err != nil {
		return err
	}
	for _, c := range r.Controls {
		for _, e := range c.Exceptions {
			if err := cw.Write(safetext.CSVRow([]string{c.ID, c.Title, strings.Join(c.Criteria, ";"), e.DeviceID, e.Hostname, e.Status,
				stamp(e.Start), stamp(e.End), strconv.FormatInt(e.DurationSeconds, 10), strconv.FormatBool(e.Open), e.Cause,
				strconv.FormatBool(e.Waived), e.WaiverID, e.Approver})); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteSummaryCSV writes one row per control.
func WriteSummaryCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(safetext.CSVRow(SummaryCSVHeader)); err != nil {
		return err
	}
	for _, c := range r.Controls {
		if err := cw.Write(safetext.CSVRow([]string{c.ID, c.Title, strings.Join(c.Criteria, ";"), strconv.Itoa(c.Population),
			strconv.FormatInt(c.InScopeSeconds, 10), strconv.FormatInt(c.CompliantSeconds, 10), percent(c),
			strconv.Itoa(c.DevicesAlwaysCompliant), strconv.Itoa(len(c.Exceptions)), strconv.FormatInt(c.WaivedSeconds, 10),
			percentOf(c, c.CompliantOrWaivedPercent), c.Grace, strconv.FormatInt(c.InGraceSeconds, 10)})); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteText writes the report for a terminal: the per-control table, every
// exception (waived ones marked with their waiver), the waivers in force,
// the devices that never reported, population completeness against the
// inventory, and the sample.
func WriteText(w io.Writer, r *Report) error {
	fmt.Fprintf(w, "Evident SOC 2 Type II period report\nPeriod: %s to %s", safetext.Args(stamp(r.From), stamp(r.To))...)
	if r.CountedTo.Before(r.To) {
		fmt.Fprintf(w, " (counted to %s)", safetext.Args(stamp(r.CountedTo))...)
	}
	fmt.Fprintf(w, "\nPolicy: %s\nGenerated: %s\nDevices enrolled before the period end: %d\n\n", safetext.Args(r.Policy, stamp(r.GeneratedAt), len(r.Devices))...)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROL\tSOC 2\tPOPULATION\tCOMPLIANT\tCOMPLIANT OR WAIVED\tALWAYS COMPLIANT\tEXCEPTIONS\tTITLE")
	for _, c := range r.Controls {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\n", safetext.Args(c.ID, strings.Join(c.Criteria, ","), c.Population, percentSign(c, c.CompliantPercent),
			percentSign(c, c.CompliantOrWaivedPercent), c.DevicesAlwaysCompliant, len(c.Exceptions), c.Title)...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	n := 0
	for _, c := range r.Controls {
		n += len(c.Exceptions)
	}
	fmt.Fprintf(w, "\nExceptions (%d)\n", safetext.Args(n)...)
	if n > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  CONTROL\tDEVICE\tSTATUS\tSTART\tEND\tDURATION\tWAIVER\tCAUSE")
		for _, c := range r.Controls {
			for _, e := range c.Exceptions {
				end := stamp(e.End)
				if e.Open {
					end += " (open)"
				}
				waiver := "-"
				if e.Waived {
					waiver = e.WaiverID + " (" + e.Approver + ")"
				}
				fmt.Fprintf(tw, "  %s\t%s (%s)\t%s\t%s\t%s\t%s\t%s\t%s\n", safetext.Args(c.ID, e.Hostname, e.DeviceID, strings.ToUpper(e.Status),
					stamp(e.Start), end, Duration(e.DurationSeconds), waiver, e.Cause)...)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	if err := writeWaivers(w, r.Waivers); err != nil {
		return err
	}

	if f := r.PatchSLA; f != nil {
		fmt.Fprintf(w, "\nSecurity updates applied within %s of first being seen pending\n", safetext.Args(f.Window())...)
		fmt.Fprintf(w, "  %s\n", safetext.Args(f.Summary())...)
	}

	fmt.Fprintf(w, "\nNever reported in the period (%d)\n", safetext.Args(len(r.NeverReported))...)
	for _, d := range r.NeverReported {
		fmt.Fprintf(w, "  %s (%s): enrolled %s, last report %s\n", safetext.Args(d.Hostname, d.ID, stamp(d.EnrolledAt), lastSeen(d))...)
	}

	if len(r.Retired) > 0 {
		fmt.Fprintf(w, "\nRetired (left the fleet; counted up to their retirement) (%d)\n", safetext.Args(len(r.Retired))...)
		for _, d := range r.Retired {
			fmt.Fprintf(w, "  %s (%s): retired %s: %s\n", safetext.Args(d.Hostname, d.ID, stamp(*d.RetiredAt), d.RetireReason)...)
		}
	}

	writePopulation(w, r.Population)

	fmt.Fprintf(w, "\nSample: %d of %d devices in scope, seed %d\n", safetext.Args(len(r.Sample), r.SampleFrom, r.Seed)...)
	for _, d := range r.Sample {
		fmt.Fprintf(w, "\n  %s (%s, %s), enrolled %s\n", safetext.Args(d.Hostname, d.ID, d.OS, stamp(d.EnrolledAt))...)
		if len(d.Intervals) == 0 {
			fmt.Fprintln(w, "    no control intervals in the period")
			continue
		}
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "    CONTROL\tSTATUS\tSINCE\tUNTIL\tCHECKS\tEVIDENCE\tREASON")
		for _, s := range d.Intervals {
			until := "open"
			if s.Until != nil {
				until = stamp(*s.Until)
			}
			ev := "-"
			if s.EvidenceSeq != 0 {
				ev = "seq " + strconv.FormatUint(s.EvidenceSeq, 10)
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%d\t%s\t%s\n", safetext.Args(s.ControlID, strings.ToUpper(s.Status), stamp(s.Since), until,
				s.Evaluations, ev, s.Reason)...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, s := range d.Intervals {
			if len(s.Evidence) > 0 {
				fmt.Fprintf(w, "    evidence %s since %s: %s\n", safetext.Args(s.ControlID, stamp(s.Since), compact(s.Evidence))...)
			}
		}
	}
	return nil
}

// Duration formats seconds as days, hours, minutes and seconds: "2d 3h 17m 5s".
func Duration(sec int64) string {
	if sec == 0 {
		return "0s"
	}
	var parts []string
	for _, u := range []struct {
		n    int64
		unit string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if sec >= u.n {
			parts = append(parts, strconv.FormatInt(sec/u.n, 10)+u.unit)
			sec %= u.n
		}
	}
	return strings.Join(parts, " ")
}

// percent shows CompliantPercent to two decimals, rounded down, so any
// exception shows below 100.00.
func percent(c ControlPeriod) string { return percentOf(c, c.CompliantPercent) }

// percentOf shows one of c's percentages like percent: pct.NA when no
// device was in scope.
func percentOf(c ControlPeriod, v float64) string {
	if !c.InScope() {
		return pct.NA
	}
	return pct.Format(v, 2)
}

// percentSign is percentOf with its unit, for text.
func percentSign(c ControlPeriod, v float64) string {
	if !c.InScope() {
		return pct.NA
	}
	return percentOf(c, v) + "%"
}

func lastSeen(d DeviceRef) string {
	if d.LastSeenAt == nil {
		return "never"
	}
	return stamp(*d.LastSeenAt)
}

// writeWaivers lists the waivers in force during the period.
func writeWaivers(w io.Writer, ws []WaiverRef) error {
	fmt.Fprintf(w, "\nWaivers in force during the period (%d)\n", safetext.Args(len(ws))...)
	if len(ws) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  WAIVER\tDEVICE\tCONTROL\tSTARTS\tENDS\tAPPROVER\tWAIVED\tREASON")
	for _, x := range ws {
		control := x.ControlID
		if control == "" {
			control = "all controls"
		}
		ends := "expires " + stamp(x.ExpiresAt)
		if x.RevokedAt != nil && x.RevokedAt.Before(x.ExpiresAt) {
			ends = "revoked " + stamp(*x.RevokedAt)
		}
		fmt.Fprintf(tw, "  %s\t%s (%s)\t%s\t%s\t%s\t%s\t%s\t%s\n", safetext.Args(x.ID, x.Hostname, x.DeviceID, control, stamp(x.StartsAt), ends,
			x.Approver, Duration(x.WaivedSeconds), x.Reason)...)
	}
	return tw.Flush()
}

// writePopulation writes the reconciliation with the inventory.
func writePopulation(w io.Writer, p Population) {
	fmt.Fprintln(w, "\nPopulation completeness")
	if !p.Imported {
		fmt.Fprintln(w, "  No device inventory imported: the population was not reconciled (evident-server inventory import FILE).")
		return
	}
	src := p.InventoryFilename
	if p.InventorySource != "" {
		src = fmt.Sprintf("%q (%s)", p.InventorySource, p.InventoryFilename)
	}
	fmt.Fprintf(w, "  Inventory: %d devices from %s, imported %s, sha256 %s\n", safetext.Args(p.InventoryRows, src, stamp(*p.InventoryImportedAt), p.InventorySHA256)...)
	fmt.Fprintf(w, "  Matched to enrolled devices: %d; in the inventory, never enrolled: %d; silent in the period: %d; enrolled, not in the inventory: %d\n", safetext.Args(p.Matched, p.NeverEnrolledCount, p.SilentCount, p.NotInInventoryCount)...)
	row := func(r InventoryRow) string {
		var parts []string
		for _, f := range []struct{ k, v string }{{"serial", r.SerialNumber}, {"hostname", r.Hostname}, {"owner", r.Owner}} {
			if f.v != "" {
				parts = append(parts, f.k+" "+f.v)
			}
		}
		return fmt.Sprintf("line %d: %s", r.Line, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "\n  In the inventory, never enrolled (%d)\n", safetext.Args(len(p.InInventoryNeverEnrolled))...)
	for _, r := range p.InInventoryNeverEnrolled {
		fmt.Fprintf(w, "    %s\n", safetext.Args(row(r))...)
	}
	fmt.Fprintf(w, "\n  In the inventory, enrolled, no report in the period (%d)\n", safetext.Args(len(p.InInventorySilent))...)
	for _, m := range p.InInventorySilent {
		fmt.Fprintf(w, "    %s: %s (%s) by %s, last report %s\n", safetext.Args(row(m.Row), m.Device.Hostname, m.Device.ID, m.MatchedBy, lastSeen(m.Device))...)
	}
	fmt.Fprintf(w, "\n  Enrolled, not in the inventory (%d)\n", safetext.Args(len(p.EnrolledNotInInventory))...)
	for _, d := range p.EnrolledNotInInventory {
		serial := ""
		if d.SerialNumber != "" {
			serial = ", serial " + d.SerialNumber
		}
		fmt.Fprintf(w, "    %s (%s%s): enrolled %s, last report %s\n", safetext.Args(d.Hostname, d.ID, serial, stamp(d.EnrolledAt), lastSeen(d))...)
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// interval is a store.ControlState as the JSON report spells it.
type interval struct {
	ControlID   string          `json:"control_id"`
	Status      string          `json:"status"`
	Reason      string          `json:"reason"`
	Since       time.Time       `json:"since"`
	Until       *time.Time      `json:"until"` // null while open
	EvaluatedAt time.Time       `json:"evaluated_at"`
	Evaluations int             `json:"evaluations"`
	EvidenceSeq uint64          `json:"evidence_seq,omitempty"`
	Evidence    json.RawMessage `json:"evidence,omitempty"`
}

// MarshalJSON spells the intervals in snake_case like the rest of the
// report (store.ControlState has no JSON names of its own).
func (s SampledDevice) MarshalJSON() ([]byte, error) {
	ivs := make([]interval, len(s.Intervals))
	for i, c := range s.Intervals {
		ivs[i] = interval{c.ControlID, c.Status, c.Reason, c.Since, c.Until, c.EvaluatedAt, c.Evaluations, c.EvidenceSeq, c.Evidence}
	}
	return json.Marshal(struct {
		DeviceRef
		Intervals []interval `json:"intervals"`
	}{s.DeviceRef, ivs})
}
