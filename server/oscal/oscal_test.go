package oscal

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/evident-dev/evident/server/period"
)

const schemaFile = "testdata/oscal_assessment-results_schema-1.0.6.json"

func schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	// NIST's schema puts "$id" anchors next to "$ref" in some definitions
	// ("json-schema-directive"); draft-07 ignores every sibling of "$ref",
	// so a strict validator cannot find those anchors. Move each such "$ref"
	// into an allOf, which means the same and keeps the anchor.
	doc = liftRefs(doc)
	// The schema names itself by its $id and refers to its definitions by
	// anchors under that id: register it under that id.
	const id = "http://csrc.nist.gov/ns/oscal/1.0.6/oscal-ar-schema.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	if err := c.AddResource(id, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("compile the OSCAL schema: %v", err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, doc []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

var (
	from = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	to   = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
)

func sampleReport() *period.Report {
	seen := to.Add(-time.Hour)
	return &period.Report{
		From: from, To: to, GeneratedAt: to.Add(time.Hour), Policy: "Evident default device controls", Seed: 42,
		Devices: []period.DeviceRef{
			{ID: "dev_a", Hostname: "alpha", OS: "linux Debian 12", EnrolledAt: from.Add(-24 * time.Hour), LastSeenAt: &seen},
			{ID: "dev_b", Hostname: "", OS: "", EnrolledAt: from.Add(30 * 24 * time.Hour)},
		},
		Controls: []period.ControlPeriod{
			{ID: "DC-ENC-01", Title: "Disk encryption", Criteria: []string{"CC6.1", "CC6.7"}, Population: 2,
				InScopeSeconds: 1000, CompliantSeconds: 900, CompliantPercent: 90, DevicesAlwaysCompliant: 1,
				Exceptions: []period.Exception{{DeviceID: "dev_b", ControlID: "DC-ENC-01", Status: "fail",
					Start: from.Add(40 * 24 * time.Hour), End: from.Add(42 * 24 * time.Hour), DurationSeconds: 172800,
					Cause: "1 of 1 fixed volumes not encrypted", EvidenceSeq: 7},
					{DeviceID: "dev_a", ControlID: "DC-ENC-01", Status: "fail", Start: from.Add(50 * 24 * time.Hour), End: from.Add(51 * 24 * time.Hour),
						DurationSeconds: 86400, Cause: "swap not encrypted", Waived: true, WaiverID: "wvr_1", WaiverReason: "replacement ordered", Approver: "CISO"}}},
			{ID: "DC-FW-01", Title: "Host firewall", Criteria: []string{"CC6.6"}, Population: 2, InScopeSeconds: 1000,
				CompliantSeconds: 1000, CompliantPercent: 100, DevicesAlwaysCompliant: 2},
			{ID: "DC-TPM-01", Title: "TPM attestation", Criteria: []string{"CC6.1"}},
		},
	}
}

// TestExportValidates: exports validate against NIST's official OSCAL
// 1.0.6 assessment-results JSON schema, and say what the report says.
func TestExportValidates(t *testing.T) {
	s := schema(t)
	tests := []struct {
		name string
		r    *period.Report
	}{
		{"fleet with exceptions", sampleReport()},
		{"empty fleet, no controls", &period.Report{From: from, To: to, GeneratedAt: to}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, tc.r); err != nil {
				t.Fatal(err)
			}
			if err := validate(t, s, buf.Bytes()); err != nil {
				t.Fatalf("export does not validate against the OSCAL schema: %s", explain(err))
			}
		})
	}

	doc := Build(sampleReport())
	res := doc.AssessmentResults.Results[0]
	states := map[string]string{}
	for _, f := range res.Findings {
		states[f.Target.TargetID] = f.Target.Status.State
	}
	want := map[string]string{"dc-enc-01": "not-satisfied", "dc-fw-01": "satisfied", "dc-tpm-01": "not-satisfied"}
	for k, v := range want {
		if states[k] != v {
			t.Errorf("finding %s = %q, want %q", k, states[k], v)
		}
	}
	var exc, waived *Observation
	for i, o := range res.Observations {
		if len(o.Subjects) > 0 && exc == nil {
			exc = &res.Observations[i]
		}
		for _, p := range o.Props {
			if p.Name == "waiver-id" && p.Value == "wvr_1" {
				waived = &res.Observations[i]
			}
		}
	}
	if waived == nil || !strings.Contains(waived.Description, "waived by CISO: replacement ordered") {
		t.Errorf("waived exception = %+v, want its waiver shown", waived)
	}
	if exc == nil || exc.Subjects[0].SubjectUUID != res.LocalDefinitions.InventoryItems[1].UUID ||
		!strings.Contains(exc.Description, "not encrypted") {
		t.Errorf("exception observation = %+v, want one about dev_b with its cause", exc)
	}
	if res.Start != "2026-01-01T00:00:00Z" || res.End != "2026-04-01T00:00:00Z" {
		t.Errorf("result period %s to %s", res.Start, res.End)
	}
}

// TestExportPercentages: percentages are rounded down, as on every page,
// and a control without a device in scope has none (it used to say 0.00).
func TestExportPercentages(t *testing.T) {
	r := sampleReport()
	r.Controls[0].CompliantPercent = 200.0 / 3 // 66.666…: to nearest, 66.67
	summaries := map[string]Observation{}
	for _, o := range Build(r).AssessmentResults.Results[0].Observations {
		if strings.HasSuffix(o.Title, " over the period") {
			summaries[strings.TrimSuffix(o.Title, " over the period")] = o
		}
	}
	prop := func(o Observation, name string) (string, bool) {
		for _, p := range o.Props {
			if p.Name == name {
				return p.Value, true
			}
		}
		return "", false
	}
	enc := summaries["DC-ENC-01"]
	if v, _ := prop(enc, "compliant-percent"); v != "66.66" || !strings.Contains(enc.Description, "66.66% of in-scope device-time") {
		t.Errorf("DC-ENC-01 compliant-percent %q, description %q: want 66.66, rounded down", v, enc.Description)
	}
	tpm := summaries["DC-TPM-01"]
	if v, ok := prop(tpm, "compliant-percent"); ok {
		t.Errorf("DC-TPM-01 (no device in scope) has compliant-percent %q", v)
	}
	if _, ok := prop(tpm, "compliant-or-waived-percent"); ok {
		t.Error("DC-TPM-01 (no device in scope) has compliant-or-waived-percent")
	}
	if !strings.Contains(tpm.Description, "no device in scope") || strings.Contains(tpm.Description, "0.00") {
		t.Errorf("DC-TPM-01 description %q, want it to say no device was in scope, with no percentage", tpm.Description)
	}
}

// TestExportReproducible: the same report exports byte for byte the same.
func TestExportReproducible(t *testing.T) {
	var a, b bytes.Buffer
	if err := Write(&a, sampleReport()); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two exports of the same report differ")
	}
	other := sampleReport()
	other.To = other.To.Add(time.Hour)
	if Build(other).AssessmentResults.UUID == Build(sampleReport()).AssessmentResults.UUID {
		t.Error("a different period kept the same document UUID")
	}
}

// TestSchemaCatchesMistakes proves the validation can fail: documents
// broken the ways an exporter could break them are refused.
func TestSchemaCatchesMistakes(t *testing.T) {
	s := schema(t)
	for _, tc := range []struct {
		name   string
		break_ func(m map[string]any)
	}{
		{"finding state not in the enum", func(m map[string]any) {
			r := m["assessment-results"].(map[string]any)["results"].([]any)[0].(map[string]any)
			r["findings"].([]any)[0].(map[string]any)["target"].(map[string]any)["status"].(map[string]any)["state"] = "maybe"
		}},
		{"no metadata", func(m map[string]any) { delete(m["assessment-results"].(map[string]any), "metadata") }},
		{"start not a date-time", func(m map[string]any) {
			m["assessment-results"].(map[string]any)["results"].([]any)[0].(map[string]any)["start"] = "last spring"
		}},
		{"uuid malformed", func(m map[string]any) { m["assessment-results"].(map[string]any)["uuid"] = "not-a-uuid" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(Build(sampleReport()))
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			tc.break_(m)
			b, _ = json.Marshal(m)
			if err := validate(t, s, b); err == nil {
				t.Error("a broken document validated")
			}
		})
	}
}

// liftRefs rewrites {"$id": A, "$ref": R, ...} as {"$id": A, ..., "allOf":
// [{"$ref": R}]} throughout a schema.
func liftRefs(v any) any {
	switch n := v.(type) {
	case map[string]any:
		for k, c := range n {
			n[k] = liftRefs(c)
		}
		if ref, ok := n["$ref"]; ok && len(n) > 1 {
			if _, hasID := n["$id"]; hasID {
				delete(n, "$ref")
				n["allOf"] = []any{map[string]any{"$ref": ref}}
			}
		}
		return n
	case []any:
		for i, c := range n {
			n[i] = liftRefs(c)
		}
		return n
	default:
		return v
	}
}

// explain lists where a document fails the schema.
func explain(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	var out []string
	for _, u := range ve.BasicOutput().Errors {
		if u.Error != nil {
			out = append(out, u.InstanceLocation+": "+u.Error.String())
		}
	}
	return strings.Join(out, "\n")
}
