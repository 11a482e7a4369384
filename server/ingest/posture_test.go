package ingest

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

// TestPosture: the device is told, in policy order, each control that
// fails or is unknown, with the fix for its OS; the digest changes exactly
// when that list (or compliance) does, so a stream sends it only then.
func TestPosture(t *testing.T) {
	s := &Server{Policy: controls.Default()}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	plan := func(fwReason string, compliant bool) *store.StatePlan {
		return &store.StatePlan{At: at, Compliant: compliant,
			Confirm: []store.ControlState{{ControlID: "DC-FW-01", Status: store.Fail, Reason: fwReason}, {ControlID: "DC-ENC-01", Status: store.Pass, Reason: "on"}},
			Open:    []store.ControlState{{ControlID: "DC-PATCH-01", Status: store.Unknown, Reason: "stale index"}, {ControlID: "DC-TPM-01", Status: store.NotApplicable}}}
	}
	p, sum := s.posture(plan("inbound open", false), "windows")
	if p.GetCompliant() || len(p.GetAttention()) != 2 || !p.GetEvaluatedAt().AsTime().Equal(at) {
		t.Fatalf("posture = %v", p)
	}
	if a := p.GetAttention()[0]; a.GetId() != "DC-PATCH-01" || a.GetStatus() != store.Unknown || a.GetReason() != "stale index" ||
		a.GetRemediation() != controls.Default().Controls[1].RemediationFor("windows") || a.GetTitle() == "" {
		t.Errorf("first = %v, want DC-PATCH-01 (policy order) with the Windows fix", a)
	}
	if a := p.GetAttention()[1]; a.GetId() != "DC-FW-01" || a.GetStatus() != store.Fail {
		t.Errorf("second = %v", a)
	}
	if _, again := s.posture(plan("inbound open", false), "windows"); again != sum || sum == 0 {
		t.Errorf("the same evaluation digests to %x, then %x", sum, again)
	}
	if _, other := s.posture(plan("inbound open on 3389", false), "windows"); other == sum {
		t.Error("a new reason did not change the digest")
	}
	all := &store.StatePlan{At: at, Compliant: true, Confirm: []store.ControlState{{ControlID: "DC-FW-01", Status: store.Pass}}}
	if p, other := s.posture(all, "linux"); !p.GetCompliant() || len(p.GetAttention()) != 0 || other == sum || other == 0 {
		t.Errorf("compliant: %v, digest %x", p, other)
	}
}

// TestRefreshFactsIgnoresBadFacts: facts a device could not enroll with
// are logged and ignored; the stream carries on (no error, no write).
func TestRefreshFactsIgnoresBadFacts(t *testing.T) {
	s := &Server{} // no store: a write would panic
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, h := range []*evidentv1.HostFacts{{SerialNumber: "SN\x1b[2J"}, {Hostname: "host\xff"}, {OsVersion: strings.Repeat("x", 300)}, nil} {
		if err := s.refreshFacts(t.Context(), log, "dev-1", h); err != nil {
			t.Errorf("facts %v: %v; want ignored", h, err)
		}
	}
}
