package ingest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/proto/evidence"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// encryptedDisk is a disk encryption payload that passes DC-ENC-01.
func encryptedDisk() []byte {
	b, _ := json.Marshal(evidence.DiskEncryptionPayload{Volumes: []evidence.DiskVolume{
		{Device: "/dev/nvme0n1p3", Mountpoints: []string{"/"}, Role: "system", Encrypted: true, Method: "LUKS2"}}})
	return b
}

// A device that stops reporting must not keep an open "pass" interval: the
// periodic rescore closes it with the server clock.
func TestRescoreMakesSilentDevicesStale(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dev, err := st.EnrollDevice(ctx, store.Device{ID: pki.NewDeviceID(), EnrolledAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	payload := encryptedDisk()
	if _, err := st.Ingest(ctx, dev.ID, []store.Observation{{Seq: 1, Collector: evidence.DiskEncryption, CollectedAt: t0,
		Status: "ok", Payload: payload, Sources: []byte("[]")}}, t0); err != nil {
		t.Fatal(err)
	}
	srv := &Server{Store: st, Policy: controls.Default(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := srv.Score(ctx, dev.ID, t0); err != nil {
		t.Fatal(err)
	}
	status := func() map[string]string {
		cur, err := st.CurrentStates(ctx, dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, c := range cur {
			m[c.ControlID] = c.Status
		}
		return m
	}
	if s := status(); s["DC-ENC-01"] != store.Pass || s["DC-AGENT-01"] != store.Pass {
		t.Fatalf("after the report: %v; want DC-ENC-01 and DC-AGENT-01 pass", s)
	}

	// The periodic rescore evaluates only the devices due: this one when
	// its report (24 h, DC-AGENT-01) and its evidence (48 h) run out.
	for _, tc := range []struct {
		after          time.Duration
		due            int
		wantEnc, agent string
	}{
		{time.Hour, 0, store.Pass, store.Pass},         // fresh: not evaluated
		{25 * time.Hour, 1, store.Pass, store.Fail},    // no report for over 24 h
		{26 * time.Hour, 0, store.Pass, store.Fail},    // nothing new until the evidence runs out
		{49 * time.Hour, 1, store.Unknown, store.Fail}, // evidence older than 48 h
		{50 * time.Hour, 0, store.Unknown, store.Fail}, // settled: only the daily evaluation
		{73 * time.Hour, 1, store.Unknown, store.Fail}, // the daily one
	} {
		n, err := srv.RescoreDue(ctx, t0.Add(tc.after))
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.due {
			t.Errorf("%s after the last report: %d devices rescored; want %d", tc.after, n, tc.due)
		}
		if s := status(); s["DC-ENC-01"] != tc.wantEnc || s["DC-AGENT-01"] != tc.agent {
			t.Errorf("%s after the last report: DC-ENC-01 %s, DC-AGENT-01 %s; want %s, %s",
				tc.after, s["DC-ENC-01"], s["DC-AGENT-01"], tc.wantEnc, tc.agent)
		}
	}
	hist, err := st.StateHistory(ctx, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.ControlID == "DC-ENC-01" && h.Status == store.Pass {
			if h.Until == nil || !h.Until.Equal(t0.Add(49*time.Hour)) {
				t.Errorf("DC-ENC-01 pass interval until %v; want closed at the rescore 49 h later", h.Until)
			}
		}
	}
}

// TestReportsKeepAgentFresh: reports arrive a little after their
// collection (as they always do), every few minutes. After each one every
// control is decided from it without waiting for a rescore: DC-AGENT-01
// passes, in one interval over the whole run, and the device is not due
// for the periodic rescore. (Scored as of the collection time, the report
// was received after the evaluation time: DC-AGENT-01 went unknown after
// every report and back to pass at the next rescore.)
func TestReportsKeepAgentFresh(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := t0
	srv := &Server{Store: st, Policy: controls.Default(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return clock }}
	dev, err := st.EnrollDevice(ctx, store.Device{ID: pki.NewDeviceID(), GOOS: "linux", EnrolledAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	payload := encryptedDisk()
	var last time.Time
	for i := range 6 {
		collected := t0.Add(time.Duration(i) * 5 * time.Minute)
		clock = collected.Add(1500 * time.Millisecond) // received a moment later
		o := &evidentv1.Observation{Seq: uint64(i + 1), Collector: evidence.DiskEncryption, CollectedAt: timestamppb.New(collected),
			Status: evidentv1.Observation_STATUS_OK, PayloadJson: payload}
		if _, err := srv.ingest(ctx, dev.ID, []*evidentv1.Observation{o}, &last); err != nil {
			t.Fatal(err)
		}
		cur, err := st.CurrentStates(ctx, dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cur {
			if (c.ControlID == "DC-AGENT-01" || c.ControlID == "DC-ENC-01") && c.Status != store.Pass {
				t.Errorf("report %d: %s is %s (%s); want pass", i+1, c.ControlID, c.Status, c.Reason)
			}
		}
		if due, err := st.DevicesDue(ctx, clock.Add(time.Minute)); err != nil || len(due) != 0 {
			t.Errorf("report %d: devices due a minute later: %v, %v; want none", i+1, due, err)
		}
	}
	hist, err := st.StateHistory(ctx, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	var agent []string
	for _, h := range hist {
		if h.ControlID == "DC-AGENT-01" {
			agent = append(agent, h.Status)
		}
	}
	if len(agent) != 1 || agent[0] != store.Pass {
		t.Errorf("DC-AGENT-01 intervals over six reports: %v; want one pass", agent)
	}
}
