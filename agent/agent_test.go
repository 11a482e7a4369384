package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

func decode(t *testing.T, b []byte) *evidentv1.Observation {
	t.Helper()
	var p evidentv1.Observation
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Fatalf("proto.Unmarshal: %v", err)
	}
	return &p
}

func TestEncodeObservation(t *testing.T) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	zero, three := 0, 3
	tests := []struct {
		name       string
		status     collectors.Status
		wantStatus evidentv1.Observation_Status
	}{
		{"ok", collectors.StatusOK, evidentv1.Observation_STATUS_OK},
		{"error", collectors.StatusError, evidentv1.Observation_STATUS_ERROR},
		{"unsupported", collectors.StatusUnsupported, evidentv1.Observation_STATUS_UNSUPPORTED},
		{"unknown", collectors.Status("weird"), evidentv1.Observation_STATUS_UNSPECIFIED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := collectors.Observation{
				Collector: "diskencryption", CollectedAt: at, Status: tt.status, Error: "e",
				ParserVersion: 2, Payload: json.RawMessage(`{"encrypted":true}`), DurationMS: 42,
				Sources: []collectors.Source{
					{Kind: "command", Ref: "lsblk -J", ExitCode: &zero, Excerpt: "{}"},
					{Kind: "command", Ref: "cryptsetup status root", ExitCode: &three, Error: "exit 3"},
					{Kind: "file", Ref: "/etc/crypttab", Excerpt: "root UUID=x none luks"},
				},
			}
			b, err := EncodeObservation(o)
			if err != nil {
				t.Fatal(err)
			}
			p := decode(t, b)
			if p.GetSeq() != 0 {
				t.Errorf("seq = %d: the outbox key carries it", p.GetSeq())
			}
			if p.GetCollector() != "diskencryption" || p.GetError() != "e" || p.GetParserVersion() != 2 || p.GetDurationMs() != 42 {
				t.Errorf("observation = %v", p)
			}
			if p.GetStatus() != tt.wantStatus {
				t.Errorf("status = %v, want %v", p.GetStatus(), tt.wantStatus)
			}
			if !p.GetCollectedAt().AsTime().Equal(at) {
				t.Errorf("collected_at = %v, want %v", p.GetCollectedAt().AsTime(), at)
			}
			if string(p.GetPayloadJson()) != `{"encrypted":true}` {
				t.Errorf("payload = %s", p.GetPayloadJson())
			}
			s := p.GetSources()
			if len(s) != 3 {
				t.Fatalf("sources = %v", s)
			}
			if s[0].GetKind() != "command" || s[0].GetRef() != "lsblk -J" || s[0].GetExcerpt() != "{}" {
				t.Errorf("sources[0] = %v", s[0])
			}
			// Exit code 0 is evidence too: it must survive as present.
			if s[0].ExitCode == nil || *s[0].ExitCode != 0 {
				t.Errorf("sources[0].exit_code = %v, want 0 present", s[0].ExitCode)
			}
			if s[1].ExitCode == nil || *s[1].ExitCode != 3 || s[1].GetError() != "exit 3" {
				t.Errorf("sources[1] = %v", s[1])
			}
			if s[2].ExitCode != nil || s[2].GetKind() != "file" || s[2].GetRef() != "/etc/crypttab" {
				t.Errorf("sources[2] = %v, want a file without an exit code", s[2])
			}
		})
	}
}

func TestEncodeObservationEdges(t *testing.T) {
	t.Run("negative duration", func(t *testing.T) {
		b, err := EncodeObservation(collectors.Observation{Collector: "x", DurationMS: -5})
		if err != nil {
			t.Fatal(err)
		}
		if d := decode(t, b).GetDurationMs(); d != 0 {
			t.Errorf("duration_ms = %d, want 0", d)
		}
	})
	// A command can print bytes that are not UTF-8 (a Latin-1 file name, a
	// binary blob). Proto3 strings must be UTF-8, and one bad excerpt must
	// not make the whole collection cycle fail to encode.
	t.Run("invalid UTF-8 in strings", func(t *testing.T) {
		o := collectors.Observation{
			Collector: "x", Status: collectors.StatusError, Error: "open /home/j\xe9r\xf4me: denied",
			Sources: []collectors.Source{{Kind: "command", Ref: "lsblk \xff", Excerpt: "caf\xe9\x00\xff"}},
		}
		b, err := EncodeObservation(o)
		if err != nil {
			t.Fatalf("EncodeObservation: %v", err)
		}
		p := decode(t, b)
		for _, s := range []string{p.GetError(), p.GetSources()[0].GetRef(), p.GetSources()[0].GetExcerpt()} {
			if !utf8.ValidString(s) {
				t.Errorf("%q is not valid UTF-8", s)
			}
		}
		if !strings.HasPrefix(p.GetSources()[0].GetExcerpt(), "caf") || !strings.HasPrefix(p.GetError(), "open /home/j") {
			t.Errorf("text lost: %q, %q", p.GetSources()[0].GetExcerpt(), p.GetError())
		}
	})
}

func TestEncodeGap(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := decode(t, encodeGap(outbox.Gap{FirstSeq: 10, LastSeq: 19, Count: 10, Bytes: 4096, At: at}))
	if p.GetCollector() != "agent.outbox" || p.GetStatus() != evidentv1.Observation_STATUS_OK {
		t.Errorf("gap observation = %v", p)
	}
	if !p.GetCollectedAt().AsTime().Equal(at) {
		t.Errorf("collected_at = %v, want %v", p.GetCollectedAt().AsTime(), at)
	}
	var payload struct {
		Event    string  `json:"event"`
		FirstSeq *uint64 `json:"first_seq"`
		LastSeq  *uint64 `json:"last_seq"`
		Count    *int    `json:"count"`
		Bytes    int64   `json:"bytes"`
		Reason   string  `json:"reason"`
	}
	if err := json.Unmarshal(p.GetPayloadJson(), &payload); err != nil {
		t.Fatalf("payload %s: %v", p.GetPayloadJson(), err)
	}
	if payload.Event != "dropped" || payload.FirstSeq == nil || *payload.FirstSeq != 10 || payload.LastSeq == nil || *payload.LastSeq != 19 ||
		payload.Count == nil || *payload.Count != 10 || payload.Bytes != 4096 || payload.Reason == "" {
		t.Errorf("payload = %s", p.GetPayloadJson())
	}
}

type fakeCollector struct {
	name string
	err  error
}

func (f fakeCollector) Name() string { return f.name }
func (f fakeCollector) Collect(ctx context.Context, _ platform.Host) (collectors.Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		return collectors.Result{}, errors.New("no per-collector timeout")
	}
	return collectors.Result{Payload: map[string]string{"from": f.name}}, f.err
}

func TestCollect(t *testing.T) {
	reg, err := collectors.NewRegistry(fakeCollector{name: "zeta", err: errors.New("broken")}, fakeCollector{name: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	obs := Collect(context.Background(), Config{Registry: reg, Host: &platform.Live{Root: t.TempDir()}})
	if len(obs) != 2 {
		t.Fatalf("Collect returned %d observations, want 2", len(obs))
	}
	if obs[0].Collector != "alpha" || obs[0].Status != collectors.StatusOK || string(obs[0].Payload) != `{"from":"alpha"}` {
		t.Errorf("obs[0] = %+v", obs[0])
	}
	if obs[1].Collector != "zeta" || obs[1].Status != collectors.StatusError || obs[1].Error != "broken" {
		t.Errorf("obs[1] = %+v", obs[1])
	}
	for _, o := range obs {
		if o.CollectedAt.IsZero() {
			t.Errorf("%s: no collection time", o.Collector)
		}
		if _, err := EncodeObservation(o); err != nil {
			t.Errorf("%s: %v", o.Collector, err)
		}
	}
}

// recordedHost is a host whose clock stands at the instant it was recorded,
// as a replayed snapshot's does.
type recordedHost struct {
	platform.Host
	at time.Time
}

func (h recordedHost) Now() time.Time { return h.at }

// TestHostClockDatesEvidence: collect and a collection cycle date
// observations on the host's clock (a snapshot's recorded instant), while
// the cycle's own timing and the watchdog stay on the agent's clock.
func TestHostClockDatesEvidence(t *testing.T) {
	recorded := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	reg, err := collectors.NewRegistry(fakeCollector{name: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	host := recordedHost{Host: &platform.Live{Root: t.TempDir()}, at: recorded}
	for _, o := range Collect(context.Background(), Config{Registry: reg, Host: host}) {
		if !o.CollectedAt.Equal(recorded) {
			t.Errorf("collect: %s collected_at %s; want the host's %s", o.Collector, o.CollectedAt, recorded)
		}
	}
	a, clk, _ := newTestAgent(t, Config{}, fakeCollector{name: "alpha"})
	a.cfg.Host = host
	if err := a.cycle(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := lastObservations(t, a)["alpha"].GetCollectedAt().AsTime(); !got.Equal(recorded) {
		t.Errorf("cycle: collected_at %s; want the host's %s", got, recorded)
	}
	if st := a.Status(); !st.LastCycleAt.Equal(clk.Now()) {
		t.Errorf("last cycle at %s; want the agent's clock %s", st.LastCycleAt, clk.Now())
	}
	if _, err := a.hangErr(clk.Now()); err != nil {
		t.Errorf("the host's clock reached the watchdog: %v", err)
	}
}
