package ingest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// A device that stops reporting must not keep an open "pass" interval: the
// periodic rescore closes it with the server clock.
func TestRescoreMakesSilentDevicesStale(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dev, err := st.EnrollDevice(ctx, store.Device{ID: pki.NewDeviceID(), EnrolledAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(evidence.DiskEncryptionPayload{Volumes: []evidence.DiskVolume{
		{Device: "/dev/nvme0n1p3", Mountpoints: []string{"/"}, Role: "system", Encrypted: true, Method: "LUKS2"}}})
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

	for _, tc := range []struct {
		after          time.Duration
		wantEnc, agent string
	}{
		{time.Hour, store.Pass, store.Pass},         // fresh
		{25 * time.Hour, store.Pass, store.Fail},    // no report for over 24 h
		{49 * time.Hour, store.Unknown, store.Fail}, // evidence older than 48 h
	} {
		if err := srv.Rescore(ctx, t0.Add(tc.after)); err != nil {
			t.Fatal(err)
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
