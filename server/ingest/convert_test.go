package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/proto/evidence"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

var (
	received = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	previous = received.Add(-10 * time.Minute) // the device's last collected_at
)

// goodObs is a valid observation; mod changes one thing.
func goodObs(mod ...func(*evidentv1.Observation)) *evidentv1.Observation {
	exit := int32(0)
	o := &evidentv1.Observation{
		Seq:           7,
		Collector:     "firewall",
		CollectedAt:   timestamppb.New(received.Add(-time.Minute)),
		Status:        evidentv1.Observation_STATUS_OK,
		ParserVersion: 2,
		PayloadJson:   []byte(`{"enabled":true,"inbound_default_deny":true}`),
		Sources:       []*evidentv1.Source{{Kind: "command", Ref: "/usr/sbin/nft -j list ruleset", ExitCode: &exit, Excerpt: "{}"}},
		DurationMs:    12,
	}
	for _, m := range mod {
		m(o)
	}
	return o
}

func TestConvert(t *testing.T) {
	o := goodObs()
	last := previous
	got, err := convert(o, received, &last)
	if err != nil {
		t.Fatalf("convert: %v", err)
	}
	if got.Seq != 7 || got.Collector != "firewall" || got.Status != "ok" || got.ParserVersion != 2 || got.DurationMS != 12 ||
		!got.ReceivedAt.Equal(received) || !got.CollectedAt.Equal(received.Add(-time.Minute)) || got.ClockSkew {
		t.Errorf("convert = %+v", got)
	}
	if string(got.Payload) != string(o.PayloadJson) {
		t.Errorf("payload = %s", got.Payload)
	}
	var srcs []evidence.Source
	if err := json.Unmarshal(got.Sources, &srcs); err != nil {
		t.Fatalf("sources %s: %v", got.Sources, err)
	}
	if len(srcs) != 1 || srcs[0].Kind != "command" || srcs[0].Ref != "/usr/sbin/nft -j list ruleset" || srcs[0].ExitCode == nil || *srcs[0].ExitCode != 0 {
		t.Errorf("sources = %+v", srcs)
	}
	if !last.Equal(got.CollectedAt) {
		t.Errorf("lastCollected = %s, want it advanced to %s", last, got.CollectedAt)
	}
}

func TestConvertRejects(t *testing.T) {
	manySources := make([]*evidentv1.Source, 65)
	for i := range manySources {
		manySources[i] = &evidentv1.Source{Kind: "file", Ref: "/etc/x"}
	}
	bigSources := []*evidentv1.Source{
		{Kind: "file", Ref: "/a", Excerpt: strings.Repeat("x", 40<<10)},
		{Kind: "file", Ref: "/b", Excerpt: strings.Repeat("y", 40<<10)},
	}
	tests := []struct {
		name    string
		mod     func(*evidentv1.Observation)
		wantErr string
	}{
		{name: "seq 0", mod: func(o *evidentv1.Observation) { o.Seq = 0 }, wantErr: "seq must be > 0"},
		{name: "empty collector", mod: func(o *evidentv1.Observation) { o.Collector = "" }, wantErr: "collector name missing or too long"},
		{name: "collector 65 bytes", mod: func(o *evidentv1.Observation) { o.Collector = strings.Repeat("c", 65) }, wantErr: "collector name missing or too long"},
		{name: "payload over 512 KiB", mod: func(o *evidentv1.Observation) {
			o.PayloadJson = []byte(`"` + strings.Repeat("a", MaxPayloadBytes) + `"`)
		}, wantErr: "payload larger than 524288 bytes"},
		{name: "payload not JSON", mod: func(o *evidentv1.Observation) { o.PayloadJson = []byte(`{"enabled":`) }, wantErr: "payload is not valid JSON"},
		{name: "payload two JSON values", mod: func(o *evidentv1.Observation) { o.PayloadJson = []byte(`{} {}`) }, wantErr: "payload is not valid JSON"},
		{name: "65 sources", mod: func(o *evidentv1.Observation) { o.Sources = manySources }, wantErr: "more than 64 sources"},
		{name: "sources over 64 KiB", mod: func(o *evidentv1.Observation) { o.Sources = bigSources }, wantErr: "sources larger than 65536 bytes"},
		{name: "status unspecified", mod: func(o *evidentv1.Observation) { o.Status = evidentv1.Observation_STATUS_UNSPECIFIED }, wantErr: "status unspecified"},
		{name: "status out of range", mod: func(o *evidentv1.Observation) { o.Status = 42 }, wantErr: "status unspecified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := previous
			got, err := convert(goodObs(tt.mod), received, &last)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("convert = %+v, %v; want error containing %q", got, err, tt.wantErr)
			}
			if !last.Equal(previous) {
				t.Errorf("a rejected observation moved lastCollected to %s", last)
			}
		})
	}
}

func TestConvertAccepts(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*evidentv1.Observation)
		check func(t *testing.T, o *evidentv1.Observation, stored string)
	}{
		{name: "collector 64 bytes", mod: func(o *evidentv1.Observation) { o.Collector = strings.Repeat("c", 64) }},
		{name: "no payload", mod: func(o *evidentv1.Observation) { o.PayloadJson = nil }},
		{name: "payload exactly 512 KiB", mod: func(o *evidentv1.Observation) {
			o.PayloadJson = []byte(`"` + strings.Repeat("a", MaxPayloadBytes-2) + `"`)
		}},
		{name: "64 sources", mod: func(o *evidentv1.Observation) {
			o.Sources = make([]*evidentv1.Source, 64)
			for i := range o.Sources {
				o.Sources[i] = &evidentv1.Source{Kind: "file"}
			}
		}},
		{name: "no sources", mod: func(o *evidentv1.Observation) { o.Sources = nil }},
		{name: "error status", mod: func(o *evidentv1.Observation) {
			o.Status, o.Error, o.PayloadJson = evidentv1.Observation_STATUS_ERROR, "nft: permission denied", nil
		}},
		{name: "unsupported status", mod: func(o *evidentv1.Observation) { o.Status = evidentv1.Observation_STATUS_UNSUPPORTED }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := previous
			o := goodObs(tt.mod)
			got, err := convert(o, received, &last)
			if err != nil {
				t.Fatalf("convert: %v", err)
			}
			want := map[evidentv1.Observation_Status]string{1: "ok", 2: "error", 3: "unsupported"}[o.Status]
			if got.Status != want || got.Error != o.Error || got.Collector != o.Collector {
				t.Errorf("convert = status %q error %q collector %q", got.Status, got.Error, got.Collector)
			}
			if !json.Valid(got.Sources) {
				t.Errorf("sources %q are not JSON", got.Sources)
			}
		})
	}
}

func TestConvertTruncatesError(t *testing.T) {
	tests := []struct {
		name string
		err  string
		want int // bytes kept
	}{
		{name: "short", err: "boom", want: 4},
		{name: "exactly the limit", err: strings.Repeat("e", maxErrorBytes), want: maxErrorBytes},
		{name: "ascii over the limit", err: strings.Repeat("e", maxErrorBytes+100), want: maxErrorBytes},
		// 3-byte runes: 4096 is not a multiple of 3, so a byte cut splits
		// one; the cut must back off to a rune boundary.
		{name: "multi-byte over the limit", err: strings.Repeat("€", 2000), want: maxErrorBytes - maxErrorBytes%3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := previous
			got, err := convert(goodObs(func(o *evidentv1.Observation) { o.Status, o.Error = evidentv1.Observation_STATUS_ERROR, tt.err }), received, &last)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Error) != tt.want || !strings.HasPrefix(tt.err, got.Error) {
				t.Errorf("error kept %d bytes, want %d (a prefix of the original)", len(got.Error), tt.want)
			}
			if !utf8.ValidString(got.Error) {
				t.Errorf("truncated error is not valid UTF-8")
			}
		})
	}
}

func TestConvertClockSkew(t *testing.T) {
	ts := func(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
	tests := []struct {
		name      string
		collected *timestamppb.Timestamp
		last      time.Time // lastCollected before
		want      time.Time // stored collected_at
		wantSkew  bool
		wantLast  time.Time // lastCollected after
	}{
		{name: "normal", collected: ts(received.Add(-time.Minute)), last: previous, want: received.Add(-time.Minute), wantLast: received.Add(-time.Minute)},
		{name: "first observation of a device", collected: ts(received.Add(-time.Hour)), last: time.Time{}, want: received.Add(-time.Hour), wantLast: received.Add(-time.Hour)},
		{name: "1h in the future", collected: ts(received.Add(time.Hour)), last: previous, want: received, wantSkew: true, wantLast: received},
		{name: "just over the ahead tolerance", collected: ts(received.Add(clockSkewAhead + time.Second)), last: previous, want: received, wantSkew: true, wantLast: received},
		{name: "1m in the future is tolerated", collected: ts(received.Add(time.Minute)), last: previous, want: received.Add(time.Minute), wantLast: received.Add(time.Minute)},
		{name: "exactly the ahead tolerance", collected: ts(received.Add(clockSkewAhead)), last: previous, want: received.Add(clockSkewAhead), wantLast: received.Add(clockSkewAhead)},
		{name: "1h before the previous", collected: ts(previous.Add(-time.Hour)), last: previous, want: previous, wantSkew: true, wantLast: previous},
		{name: "just over the behind tolerance", collected: ts(previous.Add(-clockSkewBehind - time.Second)), last: previous, want: previous, wantSkew: true, wantLast: previous},
		{name: "1m before the previous is tolerated", collected: ts(previous.Add(-time.Minute)), last: previous, want: previous.Add(-time.Minute), wantLast: previous},
		{name: "exactly the behind tolerance", collected: ts(previous.Add(-clockSkewBehind)), last: previous, want: previous.Add(-clockSkewBehind), wantLast: previous},
		{name: "missing collected_at", collected: nil, last: previous, want: received, wantSkew: true, wantLast: received},
		{name: "invalid collected_at", collected: &timestamppb.Timestamp{Seconds: 1772366400, Nanos: -1}, last: previous, want: received, wantSkew: true, wantLast: received},
		{name: "year 1", collected: ts(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)), last: previous, want: previous, wantSkew: true, wantLast: previous},
		{name: "in the future and before a future previous", collected: ts(received.Add(24 * time.Hour)), last: received.Add(time.Hour), want: received.Add(time.Hour), wantSkew: true, wantLast: received.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := tt.last
			got, err := convert(goodObs(func(o *evidentv1.Observation) { o.CollectedAt = tt.collected }), received, &last)
			if err != nil {
				t.Fatal(err)
			}
			if !got.CollectedAt.Equal(tt.want) || got.ClockSkew != tt.wantSkew {
				t.Errorf("collected_at %s skew %v, want %s skew %v", got.CollectedAt, got.ClockSkew, tt.want, tt.wantSkew)
			}
			if got.CollectedAt.Location() != time.UTC {
				t.Errorf("collected_at in %s, want UTC", got.CollectedAt.Location())
			}
			if !last.Equal(tt.wantLast) {
				t.Errorf("lastCollected = %s, want %s", last, tt.wantLast)
			}
		})
	}
}

// TestConvertSequence: lastCollected carries across a batch, so one skewed
// observation is judged against its predecessors in the same report.
func TestConvertSequence(t *testing.T) {
	last := time.Time{}
	steps := []struct {
		at       time.Time
		want     time.Time
		wantSkew bool
	}{
		{at: received.Add(-30 * time.Minute), want: received.Add(-30 * time.Minute)},
		{at: received.Add(-20 * time.Minute), want: received.Add(-20 * time.Minute)},
		{at: received.Add(-23 * time.Minute), want: received.Add(-23 * time.Minute)},              // 3m back: tolerated
		{at: received.Add(-2 * time.Hour), want: received.Add(-20 * time.Minute), wantSkew: true}, // clamped to the newest so far
		{at: received.Add(3 * time.Hour), want: received, wantSkew: true},
		{at: received.Add(-10 * time.Minute), want: received, wantSkew: true}, // now behind the clamped future one
	}
	for i, s := range steps {
		got, err := convert(goodObs(func(o *evidentv1.Observation) { o.Seq = uint64(i + 1); o.CollectedAt = timestamppb.New(s.at) }), received, &last)
		if err != nil {
			t.Fatal(err)
		}
		if !got.CollectedAt.Equal(s.want) || got.ClockSkew != s.wantSkew {
			t.Errorf("step %d: collected_at %s skew %v, want %s skew %v", i, got.CollectedAt, got.ClockSkew, s.want, s.wantSkew)
		}
	}
}

// FuzzConvert feeds arbitrary wire bytes through the same decoding a caller
// reaches: proto.Unmarshal into an Observation, then convert. It must never
// panic, and whatever it accepts must be safe to store.
func FuzzConvert(f *testing.F) {
	seeds := []*evidentv1.Observation{
		goodObs(),
		goodObs(func(o *evidentv1.Observation) { o.Seq = 0 }),
		goodObs(func(o *evidentv1.Observation) { o.CollectedAt = nil; o.PayloadJson = nil }),
		goodObs(func(o *evidentv1.Observation) { o.PayloadJson = []byte(`{"a":`) }),
		goodObs(func(o *evidentv1.Observation) {
			o.Status, o.Error = evidentv1.Observation_STATUS_ERROR, strings.Repeat("€", 2000)
		}),
		goodObs(func(o *evidentv1.Observation) { o.CollectedAt = timestamppb.New(received.Add(time.Hour)) }),
		goodObs(func(o *evidentv1.Observation) { o.Status = evidentv1.Observation_STATUS_UNSUPPORTED; o.Sources = nil }),
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var o evidentv1.Observation
		if err := proto.Unmarshal(b, &o); err != nil {
			return
		}
		last := previous
		got, err := convert(&o, received, &last)
		if err != nil {
			return
		}
		if got.Collector == "" || len(got.Collector) > maxCollectorName {
			t.Fatalf("accepted collector %q", got.Collector)
		}
		if got.Seq == 0 {
			t.Fatal("accepted seq 0")
		}
		if len(got.Payload) > 0 && !json.Valid(got.Payload) {
			t.Fatalf("accepted payload %q is not JSON", got.Payload)
		}
		if len(got.Payload) > MaxPayloadBytes {
			t.Fatalf("accepted a %d-byte payload", len(got.Payload))
		}
		if !json.Valid(got.Sources) || len(got.Sources) > MaxSourcesBytes {
			t.Fatalf("stored sources %q", got.Sources)
		}
		switch got.Status {
		case "ok", "error", "unsupported":
		default:
			t.Fatalf("stored status %q", got.Status)
		}
		if len(got.Error) > maxErrorBytes || !utf8.ValidString(got.Error) {
			t.Fatalf("stored error of %d bytes, valid UTF-8 %v", len(got.Error), utf8.ValidString(got.Error))
		}
		if got.CollectedAt.After(received.Add(clockSkewAhead)) || got.CollectedAt.Before(previous.Add(-clockSkewBehind)) {
			t.Fatalf("collected_at %s escaped the clamp", got.CollectedAt)
		}
		if last.Before(previous) || last.Before(got.CollectedAt) {
			t.Fatalf("lastCollected %s after storing %s", last, got.CollectedAt)
		}
	})
}
