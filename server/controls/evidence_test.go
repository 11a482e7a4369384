package controls

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/store"
)

// Each control's evidence carries the observation's sources as stored,
// without decoding them; what it marshals decodes to the same sources as
// the decoded form, and sources that are not JSON (a damaged row) are
// left out instead of failing the evaluation.
func TestEvidenceSourcesMarshal(t *testing.T) {
	exit := 0
	typed := []evidence.Source{{Kind: "command", Ref: "/usr/sbin/nft -j list ruleset", ExitCode: &exit}}
	raw, err := json.Marshal(typed)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		sources []byte
		want    []evidence.Source
	}{
		{"stored sources", raw, typed},
		{"none", nil, nil},
		{"null", []byte("null"), nil},
		{"empty list", []byte("[]"), nil},
		{"not JSON", []byte(`[{"kind":`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := store.Observation{Collector: evidence.Firewall, Seq: 7, CollectedAt: at, Sources: tt.sources}
			b, err := json.Marshal(evidenceOf(o, map[string]int{"n": 1}))
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			var back Evidence
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("Unmarshal %s: %v", b, err)
			}
			if back.Collector != o.Collector || back.Seq != 7 || !back.CollectedAt.Equal(at) || fmt.Sprint(back.Facts) != "map[n:1]" {
				t.Errorf("evidence = %s", b)
			}
			if len(back.Sources) != len(tt.want) || (len(tt.want) > 0 && (back.Sources[0].Ref != tt.want[0].Ref || *back.Sources[0].ExitCode != 0)) {
				t.Errorf("sources = %+v, want %+v (%s)", back.Sources, tt.want, b)
			}
		})
	}
}
