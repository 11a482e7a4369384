package agent

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/evident-dev/evident/collectors"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

func TestEncodeObservationBound(t *testing.T) {
	big, _ := json.Marshal(map[string]string{"blob": strings.Repeat("x", MaxObservationBytes)})
	code := 0
	for _, tc := range []struct {
		name      string
		payload   []byte
		excerpt   string
		wantError bool
	}{
		{"small observation kept as is", []byte(`{"ok":true}`), "excerpt", false},
		{"payload over the bound", big, "", true},
		{"excerpts over the bound", []byte(`{}`), strings.Repeat("y", MaxObservationBytes), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := collectors.Observation{Collector: "c", CollectedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
				Status: collectors.StatusOK, Payload: tc.payload,
				Sources: []collectors.Source{{Kind: "command", Ref: "lsblk -J", ExitCode: &code, Excerpt: tc.excerpt}}}
			b, err := EncodeObservation(o)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxObservationBytes {
				t.Fatalf("encoded %d bytes, over the %d bound", len(b), MaxObservationBytes)
			}
			var p evidentv1.Observation
			if err := proto.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			if tc.wantError {
				if p.GetStatus() != evidentv1.Observation_STATUS_ERROR || !strings.Contains(p.GetError(), "exceeds") || len(p.GetPayloadJson()) != 0 {
					t.Fatalf("oversized observation: status %s error %q payload %d bytes; want an error saying it exceeds the bound",
						p.GetStatus(), p.GetError(), len(p.GetPayloadJson()))
				}
				if len(p.GetSources()) != 1 || p.GetSources()[0].GetRef() != "lsblk -J" {
					t.Fatalf("source references not kept: %v", p.GetSources())
				}
				return
			}
			if p.GetStatus() != evidentv1.Observation_STATUS_OK || string(p.GetPayloadJson()) != string(tc.payload) || p.GetSources()[0].GetExcerpt() != tc.excerpt {
				t.Fatalf("small observation changed: %v", &p)
			}
		})
	}
}
