// Package report builds the fleet posture report: for each device, each
// control of the policy with its recorded status (the open interval, as the
// server last evaluated it), the reason and evidence that decided it, its SOC 2 criteria, how long it has held, and how much
// evidence history backs it. It renders as a text table or JSON.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/evident-dev/evident/internal/safetext"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/evident-dev/evident/server/controls"
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
	Compliant  bool       `json:"compliant"` // every control passes or does not apply
	// EvaluatedAt is the oldest of its controls' newest evaluations: the
	// statuses hold as of then.
	EvaluatedAt time.Time `json:"evaluated_at"`
	// CompliantOrWaived is true when every failing or unknown control is
	// covered by a waiver in force.
	CompliantOrWaived bool      `json:"compliant_or_waived"`
	History           History   `json:"history"`
	Controls          []Control `json:"controls"`
	Reenrolled        int       `json:"reenrolled,omitempty"`
	// PreviousID is the earlier device of the same machine (by machine id).
	PreviousID   string `json:"previous_id,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
	// SerialNumber is the hardware's, as the agent last said it.
	SerialNumber string `json:"serial_number,omitempty"`
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
	ID       string     `json:"id"`
	Title    string     `json:"title"`
	Criteria []string   `json:"criteria"`
	Status   string     `json:"status"`
	Reason   string     `json:"reason"`
	Since    *time.Time `json:"since,omitempty"` // start of the current status interval
	Checks   int        `json:"evaluations"`     // evaluations in that interval
	// EvaluatedAt is the newest evaluation that confirmed the status.
	EvaluatedAt *time.Time         `json:"evaluated_at,omitempty"`
	Evidence    *controls.Evidence `json:"evidence,omitempty"`
	// Waiver is the waiver in force for this control on this device, if
	// any: shown with the status, never changing it.
	Waiver *Waiver `json:"waiver,omitempty"`
	// Remediation is how to fix the control on this device's OS, from
	// the policy, while it fails or is unknown.
	Remediation string `json:"remediation,omitempty"`
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

// Store is what a report reads: the recorded states (the read model), never
// a re-scoring, so a report agrees with the web pages, the API and the
// period report at the same instant.
type Store interface {
	store.Posture
	Device(ctx context.Context, id string) (store.Device, error)
	Counts(ctx context.Context, deviceID string) (store.ObservationCounts, error)
	CurrentStates(ctx context.Context, deviceID string) ([]store.ControlState, error)
	StateHistory(ctx context.Context, deviceID string) ([]store.ControlState, error)
	WaiversOverlapping(ctx context.Context, from, to time.Time) ([]store.Waiver, error)
}

// Build assembles the report from the recorded states.
func Build(ctx context.Context, st Store, p *controls.Policy, opt Options) (*Fleet, error) {
	f := &Fleet{GeneratedAt: opt.Now.UTC(), Policy: p.Name, Summary: map[string]int{}, Devices: []Device{}}
	active, err := st.WaiversOverlapping(ctx, opt.Now, opt.Now.Add(time.Nanosecond))
	if err != nil {
		return nil, err
	}
	waivers := map[string][]store.Waiver{}
	for _, w := range active {
		waivers[w.DeviceID] = append(waivers[w.DeviceID], w)
	}
	add := func(d store.Device) error {
		rd, _, err := BuildDevice(ctx, st, p, d, waivers[d.ID])
		if err != nil {
			return fmt.Errorf("device %s: %w", d.ID, err)
		}
		for _, c := range rd.Controls {
			f.Summary[c.Status]++
		}
		f.Devices = append(f.Devices, rd)
		return nil
	}
	if opt.Device != "" {
		devs, err := Lookup(ctx, st, opt.Device)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			if err := add(d); err != nil {
				return nil, err
			}
		}
		return f, nil
	}
	q := store.DeviceQuery{Limit: store.MaxPageSize}
	for {
		page, err := st.DevicePage(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, d := range page.Devices {
			if err := add(d.Device); err != nil {
				return nil, err
			}
		}
		if page.Next == "" {
			return f, nil
		}
		q.After = page.Next
	}
}

// Lookup finds the devices a report names: by id, or else by hostname.
func Lookup(ctx context.Context, st Store, name string) ([]store.Device, error) {
	d, err := st.Device(ctx, name)
	if err == nil {
		return []store.Device{d}, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	page, err := st.DevicePage(ctx, store.DeviceQuery{Hostname: name, HostnameExact: true, Limit: store.MaxPageSize})
	if err != nil {
		return nil, err
	}
	if len(page.Devices) == 0 {
		return nil, fmt.Errorf("no device with id or hostname %q", name)
	}
	out := make([]store.Device, len(page.Devices))
	for i, d := range page.Devices {
		out[i] = d.Device
	}
	return out, nil
}

// NoEvaluation is the reason shown for a control of the policy with no
// recorded state (a device that has not reported since the control was
// added, or at all).
const NoEvaluation = "no evaluation recorded yet"

// BuildDevice is one device's posture from its recorded states, with the
// waivers in force for it; it returns the device's intervals too.
func BuildDevice(ctx context.Context, st Store, p *controls.Policy, d store.Device, waivers []store.Waiver) (Device, []store.ControlState, error) {
	counts, err := st.Counts(ctx, d.ID)
	if err != nil {
		return Device{}, nil, err
	}
	hist, err := st.StateHistory(ctx, d.ID)
	if err != nil {
		return Device{}, nil, err
	}
	open := map[string]store.ControlState{}
	for _, s := range hist {
		if s.Until == nil {
			open[s.ControlID] = s
		}
	}
	rd := Device{
		ID: d.ID, Hostname: d.Hostname, OS: d.OS(), EnrolledAt: d.EnrolledAt,
		LastSeenAt: d.LastSeenAt, Compliant: true, Reenrolled: d.Reenrolled, PreviousID: d.PreviousID, AgentVersion: d.AgentVersion, SerialNumber: d.SerialNumber,
		History: History{Observations: counts.Total, FirstSeq: counts.MinSeq, LastSeq: counts.MaxSeq,
			Since: counts.First, Until: counts.Last, Intervals: len(hist)},
	}
	waivedAll := true
	if facts, err := p.GroupsOf(controls.FactsOf(d)); err == nil {
		rd.Groups = facts.Groups
	}
	for _, pc := range p.Controls {
		c := Control{ID: pc.ID, Title: pc.Title, Criteria: pc.Criteria, Status: store.NoData, Reason: NoEvaluation}
		if s, ok := open[pc.ID]; ok {
			since, evaluated := s.Since, s.EvaluatedAt
			c.Status, c.Reason, c.Since, c.Checks, c.EvaluatedAt = s.Status, s.Reason, &since, s.Evaluations, &evaluated
			if len(s.Evidence) > 0 {
				var ev controls.Evidence
				if err := json.Unmarshal(s.Evidence, &ev); err == nil {
					c.Evidence = &ev
				}
			}
			if rd.EvaluatedAt.IsZero() || s.EvaluatedAt.Before(rd.EvaluatedAt) {
				rd.EvaluatedAt = s.EvaluatedAt
			}
		}
		if c.Status == store.Fail || c.Status == store.Unknown {
			c.Remediation = pc.RemediationFor(d.GOOS)
		}
		for _, w := range waivers {
			// A waiver for this control wins over one for every control.
			if w.Covers(pc.ID) && (c.Waiver == nil || w.ControlID != "") {
				c.Waiver = &Waiver{ID: w.ID, Reason: w.Reason, Approver: w.Approver, ExpiresAt: w.End()}
			}
		}
		if c.Status != store.Pass && c.Status != store.NotApplicable {
			rd.Compliant = false
			if c.Waiver == nil {
				waivedAll = false
			}
		}
		rd.Controls = append(rd.Controls, c)
	}
	rd.CompliantOrWaived = rd.Compliant || waivedAll
	return rd, hist, nil
}

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, f *Fleet) error {
	enc := json.NewEncoder(safetext.JSONWriter(w))
	enc.SetIndent("", "  ")
	return enc.Encode(f)
}

// WriteText writes the report for a terminal: one block per device.
func WriteText(w io.Writer, f *Fleet) error {
	fmt.Fprintf(w, "Evident device posture report, %s\nPolicy: %s\n", safetext.Args(f.GeneratedAt.Format(time.RFC3339), f.Policy)...)
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
		serial := ""
		if d.SerialNumber != "" {
			serial = ", serial " + d.SerialNumber
		}
		fmt.Fprintf(w, "\nDevice %s (%s, %s%s): %s\n", safetext.Args(d.Hostname, d.ID, d.OS, serial, verdict)...)
		seen := "never"
		if d.LastSeenAt != nil {
			seen = d.LastSeenAt.Format(time.RFC3339)
		}
		evaluated := "never"
		if !d.EvaluatedAt.IsZero() {
			evaluated = d.EvaluatedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  enrolled %s, last report %s, statuses as evaluated %s\n", safetext.Args(d.EnrolledAt.Format(time.RFC3339), seen, evaluated)...)
		if d.PreviousID != "" {
			fmt.Fprintf(w, "  re-enrollment %d of this machine (same machine id); its previous device is %s\n", safetext.Args(d.Reenrolled, d.PreviousID)...)
		}
		fmt.Fprintf(w, "  evidence history: %d observations (seq %d-%d) collected %s to %s; %d control status intervals\n\n", safetext.Args(d.History.Observations, d.History.FirstSeq, d.History.LastSeq,
			fmtTime(d.History.Since), fmtTime(d.History.Until), d.History.Intervals)...)
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
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", safetext.Args(c.ID, strings.ToUpper(c.Status), strings.Join(c.Criteria, ","), since, reason)...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fixes := false
		for _, c := range d.Controls {
			if c.Remediation == "" {
				continue
			}
			if !fixes {
				fmt.Fprintln(w, "\n  How to fix:")
				fixes = true
			}
			fmt.Fprintf(w, "  %s  %s\n", safetext.Args(c.ID, c.Remediation)...)
		}
		fmt.Fprintln(w, "\n  Evidence:")
		for _, c := range d.Controls {
			if c.Evidence == nil {
				continue
			}
			fmt.Fprintf(w, "  %s  %s seq %d at %s\n", safetext.Args(c.ID, c.Evidence.Collector, c.Evidence.Seq, c.Evidence.CollectedAt.Format(time.RFC3339))...)
			for _, s := range c.Evidence.Sources {
				line := "      " + s.Kind + " " + s.Ref
				if s.ExitCode != nil {
					line += fmt.Sprintf(" (exit %d)", *s.ExitCode)
				}
				if s.Error != "" {
					line += ": " + s.Error
				}
				fmt.Fprintln(w, truncate(safetext.Terminal(line), 160))
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
	fmt.Fprintf(w, "\nSummary over %d device(s): %s\n", safetext.Args(len(f.Devices), strings.Join(parts, ", "))...)
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
