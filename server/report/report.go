// Package report builds the fleet posture report: for each device, each
// control of the policy with its status as of now, the reason and evidence
// that decided it, its SOC 2 criteria, how long it has held, and how much
// evidence history backs it. It renders as a text table or JSON.
package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/scorer"
	"github.com/evident-dev/evident/server/store"
)

// Fleet is the posture of every (or one) device.
type Fleet struct {
	GeneratedAt time.Time      `json:"generated_at"`
	Policy      string         `json:"policy"`
	Summary     map[string]int `json:"summary"` // status -> count of device controls
	Devices     []Device       `json:"devices"`
}

// Device is one device's posture.
type Device struct {
	ID         string     `json:"id"`
	Hostname   string     `json:"hostname"`
	OS         string     `json:"os"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	LastSeenAt *time.Time `json:"last_seen_at,omitempty"`
	Compliant  bool       `json:"compliant"` // no control fails or is unknown
	// CompliantOrWaived is true when every failing or unknown control is
	// covered by a waiver in force.
	CompliantOrWaived bool      `json:"compliant_or_waived"`
	History           History   `json:"history"`
	Controls          []Control `json:"controls"`
	Reenrolled        int       `json:"reenrolled,omitempty"`
	// PreviousID is the earlier device of the same machine (by machine id).
	PreviousID   string `json:"previous_id,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
	// Groups are the policy's device groups this device is in.
	Groups []string `json:"groups,omitempty"`
}

// History says how much evidence backs the report.
type History struct {
	Observations int       `json:"observations"`
	FirstSeq     uint64    `json:"first_seq"`
	LastSeq      uint64    `json:"last_seq"`
	Since        time.Time `json:"since"`
	Until        time.Time `json:"until"`
	// Intervals is the number of control status intervals recorded.
	Intervals int `json:"intervals"`
}

// Control is one control's status on a device.
type Control struct {
	ID       string             `json:"id"`
	Title    string             `json:"title"`
	Criteria []string           `json:"criteria"`
	Status   string             `json:"status"`
	Reason   string             `json:"reason"`
	Since    *time.Time         `json:"since,omitempty"` // start of the current status interval
	Checks   int                `json:"evaluations"`     // evaluations in that interval
	Evidence *controls.Evidence `json:"evidence,omitempty"`
	// Waiver is the waiver in force for this control on this device, if
	// any: shown with the status, never changing it.
	Waiver *Waiver `json:"waiver,omitempty"`
}

// Waiver is an exception granted for a control, as reports show it.
type Waiver struct {
	ID        string    `json:"id"`
	Reason    string    `json:"reason"`
	Approver  string    `json:"approver"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Options select what the report covers.
type Options struct {
	Device string // empty for every device
	Now    time.Time
}

// Build assembles the report from the store.
func Build(ctx context.Context, st store.Store, p *controls.Policy, opt Options) (*Fleet, error) {
	devs, err := st.Devices(ctx)
	if err != nil {
		return nil, err
	}
	f := &Fleet{GeneratedAt: opt.Now.UTC(), Policy: p.Name, Summary: map[string]int{}, Devices: []Device{}}
	active, err := st.WaiversOverlapping(ctx, opt.Now, opt.Now.Add(time.Nanosecond))
	if err != nil {
		return nil, err
	}
	waivers := map[string][]store.Waiver{}
	for _, w := range active {
		waivers[w.DeviceID] = append(waivers[w.DeviceID], w)
	}
	for _, d := range devs {
		if opt.Device != "" && d.ID != opt.Device && d.Hostname != opt.Device {
			continue
		}
		rd, err := buildDevice(ctx, st, p, d, opt.Now, waivers[d.ID])
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.ID, err)
		}
		for _, c := range rd.Controls {
			f.Summary[c.Status]++
		}
		f.Devices = append(f.Devices, rd)
	}
	if opt.Device != "" && len(f.Devices) == 0 {
		return nil, fmt.Errorf("no device with id or hostname %q", opt.Device)
	}
	return f, nil
}

func buildDevice(ctx context.Context, st store.Store, p *controls.Policy, d store.Device, now time.Time, waivers []store.Waiver) (Device, error) {
	counts, err := st.Counts(ctx, d.ID)
	if err != nil {
		return Device{}, err
	}
	hist, err := st.StateHistory(ctx, d.ID)
	if err != nil {
		return Device{}, err
	}
	open := map[string]store.ControlState{}
	for _, s := range hist {
		if s.Until == nil {
			open[s.ControlID] = s
		}
	}
	rd := Device{
		ID: d.ID, Hostname: d.Hostname, OS: strings.TrimSpace(d.GOOS + " " + d.OSVersion), EnrolledAt: d.EnrolledAt,
		LastSeenAt: d.LastSeenAt, Compliant: true, Reenrolled: d.Reenrolled, PreviousID: d.PreviousID, AgentVersion: d.AgentVersion,
		History: History{Observations: counts.Total, FirstSeq: counts.MinSeq, LastSeq: counts.MaxSeq,
			Since: counts.First, Until: counts.Last, Intervals: len(hist)},
	}
	waivedAll := true
	if facts, err := p.GroupsOf(controls.FactsOf(d)); err == nil {
		rd.Groups = facts.Groups
	}
	evals, err := scorer.Evaluate(ctx, st, p, d, now)
	if err != nil {
		return Device{}, err
	}
	for _, e := range evals {
		c := Control{ID: e.Control.ID, Title: e.Control.Title, Criteria: e.Control.Criteria,
			Status: e.Status, Reason: e.Reason, Evidence: e.Evidence}
		// The interval's start holds only if the stored state agrees with
		// the status as of now (it may have gone stale since).
		if s, ok := open[e.Control.ID]; ok && s.Status == e.Status {
			since := s.Since
			c.Since, c.Checks = &since, s.Evaluations
		}
		for _, w := range waivers {
			// A waiver for this control wins over one for every control.
			if w.Covers(e.Control.ID) && (c.Waiver == nil || w.ControlID != "") {
				c.Waiver = &Waiver{ID: w.ID, Reason: w.Reason, Approver: w.Approver, ExpiresAt: w.End()}
			}
		}
		if e.Status == store.Fail || e.Status == store.Unknown {
			rd.Compliant = false
			if c.Waiver == nil {
				waivedAll = false
			}
		}
		rd.Controls = append(rd.Controls, c)
	}
	rd.CompliantOrWaived = rd.Compliant || waivedAll
	return rd, nil
}

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, f *Fleet) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(f)
}

// WriteText writes the report for a terminal: one block per device.
func WriteText(w io.Writer, f *Fleet) error {
	fmt.Fprintf(w, "Evident device posture report, %s\nPolicy: %s\n", f.GeneratedAt.Format(time.RFC3339), f.Policy)
	if len(f.Devices) == 0 {
		fmt.Fprintln(w, "\nNo devices enrolled yet. Create a secret with `evident-server secret create` and run `evident-agent enroll`.")
		return nil
	}
	for _, d := range f.Devices {
		verdict := "COMPLIANT"
		switch {
		case !d.Compliant && d.CompliantOrWaived:
			verdict = "NOT COMPLIANT (every exception is waived)"
		case !d.Compliant:
			verdict = "NOT COMPLIANT"
		}
		fmt.Fprintf(w, "\nDevice %s (%s, %s): %s\n", d.Hostname, d.ID, d.OS, verdict)
		seen := "never"
		if d.LastSeenAt != nil {
			seen = d.LastSeenAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  enrolled %s, last report %s\n", d.EnrolledAt.Format(time.RFC3339), seen)
		if d.PreviousID != "" {
			fmt.Fprintf(w, "  re-enrollment %d of this machine (same machine id); its previous device is %s\n", d.Reenrolled, d.PreviousID)
		}
		fmt.Fprintf(w, "  evidence history: %d observations (seq %d-%d) collected %s to %s; %d control status intervals\n\n",
			d.History.Observations, d.History.FirstSeq, d.History.LastSeq,
			fmtTime(d.History.Since), fmtTime(d.History.Until), d.History.Intervals)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  CONTROL\tSTATUS\tSOC 2\tSINCE\tREASON")
		for _, c := range d.Controls {
			since := "-"
			if c.Since != nil {
				since = fmt.Sprintf("%s (%d %s)", c.Since.Format("2006-01-02 15:04"), c.Checks, plural(c.Checks, "check", "checks"))
			}
			reason := c.Reason
			if c.Waiver != nil {
				reason += fmt.Sprintf(" [waived (%s) until %s, approved by %s: %s]", c.Waiver.ID,
					c.Waiver.ExpiresAt.Format("2006-01-02"), c.Waiver.Approver, c.Waiver.Reason)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.ID, strings.ToUpper(c.Status), strings.Join(c.Criteria, ","), since, reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w, "\n  Evidence:")
		for _, c := range d.Controls {
			if c.Evidence == nil {
				continue
			}
			fmt.Fprintf(w, "  %s  %s seq %d at %s\n", c.ID, c.Evidence.Collector, c.Evidence.Seq, c.Evidence.CollectedAt.Format(time.RFC3339))
			for _, s := range c.Evidence.Sources {
				line := "      " + s.Kind + " " + s.Ref
				if s.ExitCode != nil {
					line += fmt.Sprintf(" (exit %d)", *s.ExitCode)
				}
				if s.Error != "" {
					line += ": " + s.Error
				}
				fmt.Fprintln(w, truncate(line, 160))
			}
		}
	}
	keys := make([]string, 0, len(f.Summary))
	for k := range f.Summary {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, f.Summary[k]))
	}
	fmt.Fprintf(w, "\nSummary over %d device(s): %s\n", len(f.Devices), strings.Join(parts, ", "))
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
