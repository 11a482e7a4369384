package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
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

// TestVersionSkew sends payloads of older parser versions (as those agents
// wrote them) and of a parser newer than this server through the ingest
// path. The older ones score as they always did, including the controls
// that turn what an old parser could not see into "upgrade the agent"; the
// newer one is stored as received and scored unknown: "upgrade the server".
func TestVersionSkew(t *testing.T) {
	newerFW, newerPatches := evidence.FirewallParserVersion+1, evidence.PatchesParserVersion+1
	upgradeServer := func(collector string, v, known int) string {
		return fmt.Sprintf("%s payload from parser v%d, newer than this server understands (v%d): upgrade the server", collector, v, known)
	}
	tests := []struct {
		name      string
		collector string
		version   int
		payload   string
		want      map[string]string // control -> status + ": " + reason substring
	}{
		{
			name: "firewall v1 linux deny", collector: evidence.Firewall, version: 1,
			payload: `{"enabled":true,"inbound_default_deny":true,"decided_by":"nftables","backends":[{"name":"nftables","active":true,"inbound_default_deny":true,"detail":"table inet filter chain input: hook input policy drop"}]}`,
			want: map[string]string{"DC-FW-01": store.Unknown + ": collected by an agent whose firewall parser (v1) judged default deny from the chain policy and the last rule, " +
				"which can report deny on hosts that accept every inbound connection: upgrade the agent for a verdict"},
		},
		{
			name: "firewall v1 mac on", collector: evidence.Firewall, version: 1,
			payload: `{"enabled":true,"inbound_default_deny":false,"decided_by":"alf","backends":[{"name":"alf","active":true,"inbound_default_deny":false,"detail":"global state 1"}]}`,
			want:    map[string]string{"DC-FW-01": store.Pass + ": Application Firewall on (global state 1; agent with firewall parser v1)"},
		},
		{
			name: "patches v1", collector: evidence.Patches, version: 1,
			payload: `{"manager":"apt","os":{"id":"debian","version_id":"12"},"pending_updates":0,"pending_security_updates":0,"reboot_required":false,` +
				`"auto_updates":{"enabled":true,"mechanism":"unattended-upgrades","detail":"APT::Periodic::Unattended-Upgrade is 1"}}`,
			want: map[string]string{
				"DC-PATCH-01": store.Unknown + ": package index age cannot be read: this agent version does not report it",
				"DC-PATCH-02": store.Unknown + ": automatic updates (unattended-upgrades) configured (APT::Periodic::Unattended-Upgrade is 1), " +
					"but this agent (patches parser v1) does not check that the update job is scheduled: upgrade the agent",
			},
		},
		{
			name: "secureboot v1", collector: evidence.SecureBoot, version: 1,
			payload: `{"uefi":true,"enabled":true,"setup_mode":false}`,
			want: map[string]string{"DC-BOOT-01": store.Unknown +
				": Secure Boot enabled, but this agent (secureboot parser v1) does not read shim's validation state: upgrade the agent"},
		},
		{
			name: "firewall newer", collector: evidence.Firewall, version: newerFW,
			payload: `{"enabled":true,"inbound_default_deny":true,"verdict":"deny","reason":"IPv4 inbound denied by default","zones":["public"],` +
				`"backends":[{"name":"nftables","active":true,"inbound_default_deny":true}]}`,
			want: map[string]string{"DC-FW-01": store.Unknown + ": " + upgradeServer(evidence.Firewall, newerFW, evidence.FirewallParserVersion)},
		},
		{
			name: "patches newer", collector: evidence.Patches, version: newerPatches,
			payload: `{"manager":"apt","os":{"id":"debian"},"pending_updates":0,"pending_security_updates":0,"reboot_required":false,` +
				`"auto_updates":{"enabled":true,"mechanism":"unattended-upgrades","schedule":"daily"}}`,
			want: map[string]string{
				"DC-PATCH-01": store.Unknown + ": " + upgradeServer(evidence.Patches, newerPatches, evidence.PatchesParserVersion),
				"DC-PATCH-02": store.Unknown + ": " + upgradeServer(evidence.Patches, newerPatches, evidence.PatchesParserVersion),
			},
		},
	}
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	collected := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	srv := &Server{Store: st, Policy: controls.Default(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return collected.Add(time.Minute) }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, err := st.EnrollDevice(ctx, store.Device{ID: pki.NewDeviceID(), EnrolledAt: collected.Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			var last time.Time
			obs := &evidentv1.Observation{Seq: 1, Collector: tt.collector, CollectedAt: timestamppb.New(collected),
				Status: evidentv1.Observation_STATUS_OK, ParserVersion: uint32(tt.version), PayloadJson: []byte(tt.payload)}
			if _, err := srv.ingest(ctx, dev.ID, []*evidentv1.Observation{obs}, &last); err != nil {
				t.Fatalf("ingest: %v", err)
			}

			// Stored as received, whatever the version.
			latest, err := st.Latest(ctx, dev.ID)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := latest[tt.collector]
			if !ok || got.Status != string(evidence.StatusOK) || got.ParserVersion != tt.version || !bytes.Equal(got.Payload, []byte(tt.payload)) {
				t.Errorf("stored %+v; want the %s observation as received (ok, parser v%d, payload unchanged)", got, tt.collector, tt.version)
			}

			cur, err := st.CurrentStates(ctx, dev.ID)
			if err != nil {
				t.Fatal(err)
			}
			states := map[string]store.ControlState{}
			for _, c := range cur {
				states[c.ControlID] = c
			}
			for id, want := range tt.want {
				status, reason, _ := strings.Cut(want, ": ")
				if s := states[id]; s.Status != status || !strings.Contains(s.Reason, reason) {
					t.Errorf("%s = %s (%q); want %s with reason containing %q", id, s.Status, s.Reason, status, reason)
				}
			}
		})
	}
}
