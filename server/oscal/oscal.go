// Package oscal exports a period report as an OSCAL 1.0.6 assessment-results
// document (NIST's Open Security Controls Assessment Language), so GRC tools
// import Evident's evidence instead of screenshots of it.
//
// The mapping:
//   - every device is an inventory item (the result's local-definitions), with hostname,
//     OS and enrollment time as properties;
//   - the period is one result (start, end), reviewing every control of the
//     policy;
//   - each control gets one observation (population, share of device-time
//     compliant) and each exception interval one observation whose subject
//     is the device, with its start, end, duration and cause;
//   - each control gets one finding: satisfied when no device had an
//     exception in the period, not-satisfied otherwise, related to its
//     observations.
//
// UUIDs are name-based (SHA-1, RFC 4122 version 5) over the report's own
// identifiers, so exporting the same period of the same data twice gives
// the same document. Evident-specific properties use the namespace NS.
package oscal

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/pct"
	"github.com/evident-dev/evident/internal/safetext"
	"github.com/evident-dev/evident/internal/version"
	"github.com/evident-dev/evident/server/period"
	"github.com/google/uuid"
)

// NS is the namespace of Evident's OSCAL properties.
const NS = "https://evident.dev/ns/oscal"

// Version is the OSCAL version the documents conform to.
const Version = "1.0.6"

// namespace for name-based UUIDs.
var uuidNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte(NS))

func id(parts ...string) string {
	return uuid.NewSHA1(uuidNS, []byte(strings.Join(parts, "\x00"))).String()
}

// Document is the top level of an OSCAL assessment-results file.
type Document struct {
	AssessmentResults AssessmentResults `json:"assessment-results"`
}

// AssessmentResults is OSCAL's assessment-results.
type AssessmentResults struct {
	UUID       string     `json:"uuid"`
	Metadata   Metadata   `json:"metadata"`
	ImportAP   Link       `json:"import-ap"`
	Results    []Result   `json:"results"`
	BackMatter BackMatter `json:"back-matter"`
}

// Metadata is OSCAL's document metadata.
type Metadata struct {
	Title        string `json:"title"`
	LastModified string `json:"last-modified"`
	Version      string `json:"version"`
	OSCALVersion string `json:"oscal-version"`
	Props        []Prop `json:"props,omitempty"`
}

// Link is an href.
type Link struct {
	Href string `json:"href"`
}

// Prop is an OSCAL property.
type Prop struct {
	Name  string `json:"name"`
	NS    string `json:"ns,omitempty"`
	Value string `json:"value"`
}

// LocalDefinitions holds the devices.
type LocalDefinitions struct {
	InventoryItems []InventoryItem `json:"inventory-items,omitempty"`
}

// InventoryItem is one device.
type InventoryItem struct {
	UUID        string `json:"uuid"`
	Description string `json:"description"`
	Props       []Prop `json:"props,omitempty"`
}

// Result is one assessment result: the period.
type Result struct {
	UUID             string            `json:"uuid"`
	Title            string            `json:"title"`
	Description      string            `json:"description"`
	Start            string            `json:"start"`
	End              string            `json:"end"`
	Props            []Prop            `json:"props,omitempty"`
	LocalDefinitions *LocalDefinitions `json:"local-definitions,omitempty"`
	ReviewedControls ReviewedControls  `json:"reviewed-controls"`
	Observations     []Observation     `json:"observations,omitempty"`
	Findings         []Finding         `json:"findings,omitempty"`
}

// ReviewedControls lists the controls assessed.
type ReviewedControls struct {
	ControlSelections []ControlSelection `json:"control-selections"`
}

// ControlSelection selects controls by id.
type ControlSelection struct {
	IncludeControls []ControlRef `json:"include-controls"`
}

// ControlRef is a control id.
type ControlRef struct {
	ControlID string `json:"control-id"`
}

// Observation is OSCAL's observation.
type Observation struct {
	UUID             string             `json:"uuid"`
	Title            string             `json:"title,omitempty"`
	Description      string             `json:"description"`
	Props            []Prop             `json:"props,omitempty"`
	Methods          []string           `json:"methods"`
	Types            []string           `json:"types,omitempty"`
	Subjects         []Subject          `json:"subjects,omitempty"`
	RelevantEvidence []RelevantEvidence `json:"relevant-evidence,omitempty"`
	Collected        string             `json:"collected"`
}

// Subject references an inventory item.
type Subject struct {
	SubjectUUID string `json:"subject-uuid"`
	Type        string `json:"type"`
	Title       string `json:"title,omitempty"`
}

// RelevantEvidence describes evidence.
type RelevantEvidence struct {
	Href        string `json:"href,omitempty"`
	Description string `json:"description"`
}

// Finding is OSCAL's finding for one control.
type Finding struct {
	UUID                string       `json:"uuid"`
	Title               string       `json:"title"`
	Description         string       `json:"description"`
	Props               []Prop       `json:"props,omitempty"`
	Target              Target       `json:"target"`
	RelatedObservations []RelatedObs `json:"related-observations,omitempty"`
}

// Target is what a finding is about.
type Target struct {
	Type     string `json:"type"`
	TargetID string `json:"target-id"`
	Status   Status `json:"status"`
}

// Status is satisfied or not-satisfied.
type Status struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// RelatedObs references an observation.
type RelatedObs struct {
	ObservationUUID string `json:"observation-uuid"`
}

// BackMatter holds the assessment plan reference.
type BackMatter struct {
	Resources []Resource `json:"resources"`
}

// Resource is a back-matter resource.
type Resource struct {
	UUID        string `json:"uuid"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// controlID turns a policy control id into an OSCAL token.
func controlID(s string) string { return strings.ToLower(s) }

// Build maps a period report to an assessment-results document.
func Build(r *period.Report) *Document {
	key := ts(r.From) + "/" + ts(r.To) + "/" + r.Policy
	plan := id("plan", r.Policy)
	doc := &Document{AssessmentResults: AssessmentResults{
		UUID: id("assessment-results", key, ts(r.GeneratedAt)),
		Metadata: Metadata{
			Title:        fmt.Sprintf("Evident device controls: assessment results for %s to %s", r.From.UTC().Format("2006-01-02"), r.To.UTC().Format("2006-01-02")),
			LastModified: ts(r.GeneratedAt),
			Version:      "evident-" + version.Version,
			OSCALVersion: Version,
			Props:        []Prop{{Name: "policy", NS: NS, Value: nonEmpty(r.Policy)}, {Name: "sample-seed", NS: NS, Value: fmt.Sprint(r.Seed)}},
		},
		ImportAP: Link{Href: "#" + plan},
		BackMatter: BackMatter{Resources: []Resource{{UUID: plan, Title: "Evident control pack: " + nonEmpty(r.Policy),
			Description: "The device controls Evident evaluated (its policy file), standing in for an assessment plan."}}},
	}}
	items := map[string]string{}
	var inventory []InventoryItem
	for _, d := range r.Devices {
		u := id("device", d.ID)
		items[d.ID] = u
		props := []Prop{{Name: "device-id", NS: NS, Value: d.ID}, {Name: "enrolled-at", NS: NS, Value: ts(d.EnrolledAt)}}
		if d.Hostname != "" {
			props = append(props, Prop{Name: "hostname", NS: NS, Value: d.Hostname})
		}
		if d.OS != "" {
			props = append(props, Prop{Name: "os", NS: NS, Value: d.OS})
		}
		inventory = append(inventory, InventoryItem{UUID: u, Description: nonEmpty(strings.TrimSpace(d.Hostname + " " + d.OS)), Props: props})
	}
	res := Result{
		UUID:        id("result", key),
		Title:       fmt.Sprintf("Device controls from %s to %s", ts(r.From), ts(r.To)),
		Description: fmt.Sprintf("Operating effectiveness of %d device controls over %d devices, from Evident's continuously collected evidence.", len(r.Controls), len(r.Devices)),
		Start:       ts(r.From),
		End:         ts(r.To),
	}
	if len(inventory) > 0 {
		res.LocalDefinitions = &LocalDefinitions{InventoryItems: inventory}
	}
	var refs []ControlRef
	for _, c := range r.Controls {
		cid := controlID(c.ID)
		refs = append(refs, ControlRef{ControlID: cid})
		// Percentages rounded down (package pct); none without a device
		// in scope.
		desc := fmt.Sprintf("%s: %d devices in scope; %s%% of in-scope device-time compliant (%d of %d device-seconds); %d exception intervals; %d devices without exception.",
			c.Title, c.Population, pct.Format(c.CompliantPercent, 2), c.CompliantSeconds, c.InScopeSeconds, len(c.Exceptions), c.DevicesAlwaysCompliant)
		props := []Prop{{Name: "control-id", NS: NS, Value: c.ID}, {Name: "population", NS: NS, Value: fmt.Sprint(c.Population)}}
		if c.InScope() {
			props = append(props, Prop{Name: "compliant-percent", NS: NS, Value: pct.Format(c.CompliantPercent, 2)},
				Prop{Name: "compliant-or-waived-percent", NS: NS, Value: pct.Format(c.CompliantOrWaivedPercent, 2)})
		} else {
			desc = c.Title + ": no device in scope in the period: no compliance percentage (n/a)."
		}
		summary := Observation{
			UUID:        id("summary", key, c.ID),
			Title:       c.ID + " over the period",
			Description: desc,
			Props:       append(props, Prop{Name: "waived-seconds", NS: NS, Value: fmt.Sprint(c.WaivedSeconds)}),
			Methods:     []string{"TEST"},
			Collected:   ts(r.GeneratedAt),
		}
		for _, cr := range c.Criteria {
			summary.Props = append(summary.Props, Prop{Name: "soc2-criterion", NS: NS, Value: cr})
		}
		related := []RelatedObs{{ObservationUUID: summary.UUID}}
		res.Observations = append(res.Observations, summary)
		for i, e := range c.Exceptions {
			o := Observation{
				UUID:        id("exception", key, c.ID, e.DeviceID, ts(e.Start), fmt.Sprint(i)),
				Title:       fmt.Sprintf("%s %s on %s", c.ID, e.Status, nonEmpty(e.Hostname)),
				Description: nonEmpty(e.Cause),
				Props: []Prop{{Name: "status", NS: NS, Value: e.Status}, {Name: "start", NS: NS, Value: ts(e.Start)},
					{Name: "end", NS: NS, Value: ts(e.End)}, {Name: "duration-seconds", NS: NS, Value: fmt.Sprint(e.DurationSeconds)},
					{Name: "open", NS: NS, Value: fmt.Sprint(e.Open)}},
				Methods:   []string{"TEST"},
				Types:     []string{"finding"},
				Collected: ts(e.End),
			}
			if e.Waived {
				o.Props = append(o.Props, Prop{Name: "waived", NS: NS, Value: "true"}, Prop{Name: "waiver-id", NS: NS, Value: nonEmpty(e.WaiverID)},
					Prop{Name: "waiver-approver", NS: NS, Value: nonEmpty(e.Approver)})
				o.Description += " (waived by " + nonEmpty(e.Approver) + ": " + nonEmpty(e.WaiverReason) + ")"
			}
			if u, ok := items[e.DeviceID]; ok {
				o.Subjects = []Subject{{SubjectUUID: u, Type: "inventory-item", Title: nonEmpty(e.Hostname)}}
			}
			if e.EvidenceSeq != 0 {
				o.RelevantEvidence = []RelevantEvidence{{Description: fmt.Sprintf("observation seq %d of device %s", e.EvidenceSeq, e.DeviceID)}}
			}
			res.Observations = append(res.Observations, o)
			related = append(related, RelatedObs{ObservationUUID: o.UUID})
		}
		state, why := "satisfied", "no device had an exception in the period"
		if len(c.Exceptions) > 0 {
			state, why = "not-satisfied", fmt.Sprintf("%d exception intervals", len(c.Exceptions))
		}
		if c.Population == 0 {
			state, why = "not-satisfied", "no device in scope: operation could not be tested"
		}
		res.Findings = append(res.Findings, Finding{
			UUID:                id("finding", key, c.ID),
			Title:               c.ID + ": " + nonEmpty(c.Title),
			Description:         fmt.Sprintf("%s. %s.", nonEmpty(c.Title), why),
			Target:              Target{Type: "objective-id", TargetID: cid, Status: Status{State: state}},
			RelatedObservations: related,
		})
	}
	if len(refs) == 0 {
		refs = []ControlRef{{ControlID: "none"}}
	}
	res.ReviewedControls = ReviewedControls{ControlSelections: []ControlSelection{{IncludeControls: refs}}}
	doc.AssessmentResults.Results = []Result{res}
	return doc
}

// nonEmpty keeps OSCAL's non-empty string fields valid.
func nonEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(none)"
	}
	return strings.TrimSpace(s)
}

// Write writes the document as indented JSON.
func Write(w io.Writer, r *period.Report) error {
	enc := json.NewEncoder(safetext.JSONWriter(w))
	enc.SetIndent("", "  ")
	return enc.Encode(Build(r))
}
