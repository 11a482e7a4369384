package collectors_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

// fake is a collector whose Collect is a function.
type fake struct {
	name    string
	collect func(ctx context.Context, host platform.Host) (collectors.Result, error)
}

func (f fake) Name() string { return f.name }
func (f fake) Collect(ctx context.Context, host platform.Host) (collectors.Result, error) {
	if f.collect == nil {
		return collectors.Result{Payload: map[string]string{"name": f.name}}, nil
	}
	return f.collect(ctx, host)
}

type versioned struct{ fake }

func (versioned) ParserVersion() int { return 7 }

// clock advances 5ms on every reading; safe for RunAll's goroutines.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))}
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(5 * time.Millisecond)
	return t
}

func blockUntilDone(ctx context.Context, _ platform.Host) (collectors.Result, error) {
	<-ctx.Done()
	return collectors.Result{}, ctx.Err()
}

func mustRegistry(t *testing.T, cs ...collectors.Collector) *collectors.Registry {
	t.Helper()
	r, err := collectors.NewRegistry(cs...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistry(t *testing.T) {
	if _, err := collectors.NewRegistry(fake{name: "a"}, fake{name: "b"}, fake{name: "a"}); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("duplicate name: err = %v, want an error naming it", err)
	}
	r := mustRegistry(t, fake{name: "tpm"}, fake{name: "firewall"}, fake{name: "patches"})
	if got, want := r.Names(), []string{"firewall", "patches", "tpm"}; !slices.Equal(got, want) {
		t.Errorf("Names = %q, want %q", got, want)
	}
	if c, ok := r.Get("tpm"); !ok || c.Name() != "tpm" {
		t.Errorf("Get(tpm) = %v, %v", c, ok)
	}
	if _, ok := r.Get("nope"); ok {
		t.Error("Get(nope) found something")
	}
	if got := mustRegistry(t).Names(); len(got) != 0 {
		t.Errorf("empty registry Names = %q", got)
	}

	tests := []struct {
		name    string
		sel     []string
		want    []string
		wantErr []string // substrings of the error
	}{
		{name: "subset", sel: []string{"tpm", "firewall"}, want: []string{"firewall", "tpm"}},
		{name: "none", sel: nil, want: []string{}},
		{name: "unknown", sel: []string{"tpm", "antivirus"}, wantErr: []string{`"antivirus"`, "firewall", "patches", "tpm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := r.Select(tt.sel)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Select(%q) = %q, want an error", tt.sel, s.Names())
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Select(%q) err = %v, want it to mention %s", tt.sel, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Select(%q): %v", tt.sel, err)
			}
			if got := s.Names(); !slices.Equal(got, tt.want) {
				t.Errorf("Select(%q).Names = %q, want %q", tt.sel, got, tt.want)
			}
		})
	}
	if got := r.Names(); len(got) != 3 {
		t.Errorf("Select changed the original registry: %q", got)
	}
}

func TestRun(t *testing.T) {
	// stuck is closed when the test ends: until then, collectors waiting on
	// it ignore their context, like a read stuck in the kernel.
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	exit := 0
	src := []collectors.Source{{Kind: "command", Ref: "uname -r", ExitCode: &exit}}
	tests := []struct {
		name        string
		c           collectors.Collector
		timeout     time.Duration
		wantStatus  collectors.Status
		wantPayload string
		wantErr     string // substring of Observation.Error; "" means empty
		wantSources int
		wantVersion int
	}{
		{
			name: "ok payload marshalled",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				return collectors.Result{Payload: struct {
					Enabled bool   `json:"enabled"`
					Kind    string `json:"kind"`
				}{true, "luks2"}, Sources: src}, nil
			}},
			wantStatus: collectors.StatusOK, wantPayload: `{"enabled":true,"kind":"luks2"}`, wantSources: 1,
		},
		{
			name: "ok without payload",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				return collectors.Result{}, nil
			}},
			wantStatus: collectors.StatusOK,
		},
		{
			name: "error",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				return collectors.Result{}, errors.New("lsblk: exit 1")
			}},
			wantStatus: collectors.StatusError, wantErr: "lsblk: exit 1",
		},
		{
			name: "error keeps partial result",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				return collectors.Result{Payload: []int{1}, Sources: src}, errors.New("half")
			}},
			wantStatus: collectors.StatusError, wantErr: "half", wantPayload: "[1]", wantSources: 1,
		},
		{
			name: "unsupported",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				return collectors.Result{}, fmt.Errorf("firewall on plan9: %w", errors.ErrUnsupported)
			}},
			wantStatus: collectors.StatusUnsupported, wantErr: "firewall on plan9",
		},
		{
			name: "not applicable is ok",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				return collectors.Result{Payload: map[string]bool{"uefi": false}},
					fmt.Errorf("secure boot: %w", fmt.Errorf("no efivars: %w", collectors.ErrNotApplicable))
			}},
			wantStatus: collectors.StatusOK, wantPayload: `{"uefi":false}`,
		},
		{
			name: "panic",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				var m map[string]int
				m["boom"]++
				return collectors.Result{}, nil
			}},
			wantStatus: collectors.StatusError, wantErr: "panicked",
		},
		{
			name:       "blocks until its timeout",
			c:          fake{name: "x", collect: blockUntilDone},
			timeout:    50 * time.Millisecond,
			wantStatus: collectors.StatusError, wantErr: "deadline exceeded",
		},
		{
			// A read stuck in the kernel (hung NFS, /sys) ignores ctx.
			name: "ignores its context",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				<-stuck
				return collectors.Result{}, nil
			}},
			timeout:    50 * time.Millisecond,
			wantStatus: collectors.StatusError, wantErr: "did not finish",
		},
		{
			name: "unmarshalable payload",
			c: fake{name: "x", collect: func(context.Context, platform.Host) (collectors.Result, error) {
				return collectors.Result{Payload: make(chan int)}, nil
			}},
			wantStatus: collectors.StatusError, wantErr: "marshal payload",
		},
		{
			name:       "parser version",
			c:          versioned{fake{name: "x"}},
			wantStatus: collectors.StatusOK, wantPayload: `{"name":"x"}`, wantVersion: 7,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			start := clk.t
			timeout := tt.timeout
			if timeout == 0 {
				timeout = time.Minute
			}
			done := make(chan collectors.Observation, 1)
			go func() { done <- collectors.Run(context.Background(), tt.c, nil, timeout, clk.now) }()
			var obs collectors.Observation
			select {
			case obs = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
			if obs.Collector != "x" {
				t.Errorf("Collector = %q", obs.Collector)
			}
			if !obs.CollectedAt.Equal(start) || obs.CollectedAt.Location() != time.UTC {
				t.Errorf("CollectedAt = %v, want %v in UTC", obs.CollectedAt, start)
			}
			if obs.DurationMS != 5 {
				t.Errorf("DurationMS = %d, want 5 (one clock step)", obs.DurationMS)
			}
			if obs.Status != tt.wantStatus {
				t.Errorf("Status = %q, want %q (error %q)", obs.Status, tt.wantStatus, obs.Error)
			}
			if tt.wantErr == "" && obs.Error != "" || !strings.Contains(obs.Error, tt.wantErr) {
				t.Errorf("Error = %q, want %q", obs.Error, tt.wantErr)
			}
			if string(obs.Payload) != tt.wantPayload {
				t.Errorf("Payload = %s, want %s", obs.Payload, tt.wantPayload)
			}
			if len(obs.Sources) != tt.wantSources {
				t.Errorf("Sources = %+v, want %d", obs.Sources, tt.wantSources)
			}
			if obs.ParserVersion != tt.wantVersion {
				t.Errorf("ParserVersion = %d, want %d", obs.ParserVersion, tt.wantVersion)
			}
		})
	}
}

func TestRunParentCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	obs := collectors.Run(ctx, fake{name: "x", collect: blockUntilDone}, nil, time.Minute, time.Now)
	if obs.Status != collectors.StatusError || !strings.Contains(obs.Error, "canceled") {
		t.Errorf("obs = %+v, want a cancelled error", obs)
	}
}

func TestRunAll(t *testing.T) {
	// "b" and "c" each wait for the other to start: they finish only if
	// RunAll runs collectors concurrently.
	bStarted, cStarted := make(chan struct{}), make(chan struct{})
	rendezvous := func(mine, theirs chan struct{}) func(context.Context, platform.Host) (collectors.Result, error) {
		return func(ctx context.Context, _ platform.Host) (collectors.Result, error) {
			close(mine)
			select {
			case <-theirs:
				return collectors.Result{Payload: "met"}, nil
			case <-ctx.Done():
				return collectors.Result{}, ctx.Err()
			}
		}
	}
	r := mustRegistry(t,
		fake{name: "e-slow", collect: blockUntilDone},
		fake{name: "c", collect: rendezvous(cStarted, bStarted)},
		fake{name: "d-panics", collect: func(context.Context, platform.Host) (collectors.Result, error) { panic("no") }},
		fake{name: "a-fails", collect: func(context.Context, platform.Host) (collectors.Result, error) {
			return collectors.Result{}, errors.New("broken")
		}},
		fake{name: "b", collect: rendezvous(bStarted, cStarted)},
	)
	clk := newClock()
	obs := r.RunAll(context.Background(), nil, time.Second, clk.now)
	want := []struct {
		name   string
		status collectors.Status
	}{
		{"a-fails", collectors.StatusError},
		{"b", collectors.StatusOK},
		{"c", collectors.StatusOK},
		{"d-panics", collectors.StatusError},
		{"e-slow", collectors.StatusError},
	}
	if len(obs) != len(want) {
		t.Fatalf("RunAll returned %d observations, want %d", len(obs), len(want))
	}
	for i, w := range want {
		if obs[i].Collector != w.name || obs[i].Status != w.status {
			t.Errorf("obs[%d] = %s %s (%q), want %s %s", i, obs[i].Collector, obs[i].Status, obs[i].Error, w.name, w.status)
		}
	}
	if string(obs[1].Payload) != `"met"` || string(obs[2].Payload) != `"met"` {
		t.Errorf("b, c payloads = %s, %s: not run concurrently", obs[1].Payload, obs[2].Payload)
	}
}

func TestExcerpt(t *testing.T) {
	const marker = "\n…[truncated]"
	a := func(n int) string { return strings.Repeat("a", n) }
	max := collectors.MaxExcerpt
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "empty", in: "", want: ""},
		{name: "short", in: "LUKS2", want: "LUKS2"},
		{name: "exactly the bound", in: a(max), want: a(max)},
		{name: "one over", in: a(max + 1), want: a(max) + marker},
		{name: "rune ends at the bound", in: a(max-2) + "é" + "z", want: a(max-2) + "é" + marker},
		{name: "2-byte rune across the bound", in: a(max-1) + "é" + "z", want: a(max-1) + marker},
		{name: "4-byte rune across the bound, 1 in", in: a(max-1) + "😀", want: a(max-1) + marker},
		{name: "4-byte rune across the bound, 3 in", in: a(max-3) + "😀" + "z", want: a(max-3) + marker},
		{name: "rune starts at the bound", in: a(max) + "😀", want: a(max) + marker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := collectors.Excerpt([]byte(tt.in))
			if got != tt.want {
				t.Errorf("Excerpt = …%q (len %d), want …%q (len %d)", tail(got), len(got), tail(tt.want), len(tt.want))
			}
			if !utf8.ValidString(got) {
				t.Errorf("Excerpt is not valid UTF-8: …%q", tail(got))
			}
			if body := strings.TrimSuffix(got, marker); len(body) > max || !strings.HasPrefix(tt.in, body) {
				t.Errorf("Excerpt body of %d bytes is not a prefix within the bound", len(body))
			}
		})
	}
}

func tail(s string) string {
	if len(s) > 12 {
		return s[len(s)-12:]
	}
	return s
}

func TestCommandSource(t *testing.T) {
	tests := []struct {
		name    string
		res     platform.Result
		wantRef string
	}{
		{name: "joined argv", res: platform.Result{Argv: []string{"lsblk", "-J", "-o", "NAME,TYPE"}, ExitCode: 2}, wantRef: "lsblk -J -o NAME,TYPE"},
		{name: "exit 0 is recorded", res: platform.Result{Argv: []string{"uname"}}, wantRef: "uname"},
		{name: "no argv", res: platform.Result{ExitCode: 1}, wantRef: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := collectors.CommandSource(tt.res, []byte("out"))
			if s.Kind != "command" || s.Ref != tt.wantRef || s.Excerpt != "out" || s.Error != "" {
				t.Errorf("CommandSource = %+v, want ref %q", s, tt.wantRef)
			}
			if s.ExitCode == nil || *s.ExitCode != tt.res.ExitCode {
				t.Fatalf("ExitCode = %v, want %d", s.ExitCode, tt.res.ExitCode)
			}
			tt.res.ExitCode = 99
			if *s.ExitCode == 99 {
				t.Error("ExitCode aliases the Result")
			}
		})
	}
	long := collectors.CommandSource(platform.Result{Argv: []string{"x"}}, []byte(strings.Repeat("y", collectors.MaxExcerpt*2)))
	if len(long.Excerpt) > collectors.MaxExcerpt+len("\n…[truncated]") {
		t.Errorf("excerpt of %d bytes is not bounded", len(long.Excerpt))
	}
}

func TestFileSource(t *testing.T) {
	s := collectors.FileSource("/etc/os-release", []byte("ID=debian"), nil)
	if s.Kind != "file" || s.Ref != "/etc/os-release" || s.Excerpt != "ID=debian" || s.Error != "" || s.ExitCode != nil {
		t.Errorf("FileSource = %+v", s)
	}
	s = collectors.FileSource("/sys/x", nil, errors.New("permission denied"))
	if s.Error != "permission denied" || s.Excerpt != "" {
		t.Errorf("FileSource with error = %+v", s)
	}
}

func TestByOS(t *testing.T) {
	read := func(os string) func(context.Context, platform.Host) (collectors.Result, error) {
		return func(context.Context, platform.Host) (collectors.Result, error) {
			return collectors.Result{Payload: os}, nil
		}
	}
	c := collectors.ByOS{Signal: "sig", Version: 3, Linux: read("linux"), Windows: read("windows")}
	if c.Name() != "sig" || c.ParserVersion() != 3 {
		t.Fatalf("name %q version %d", c.Name(), c.ParserVersion())
	}
	for _, tc := range []struct {
		goos, want  string
		unsupported bool
	}{
		{"linux", "linux", false},
		{"windows", "windows", false},
		{"darwin", "", true}, // no reader
		{"plan9", "", true},
	} {
		res, err := c.Collect(context.Background(), platformtest.Replay{Live: &platform.Live{}, OS: tc.goos})
		if tc.unsupported != errors.Is(err, errors.ErrUnsupported) || (!tc.unsupported && res.Payload != tc.want) {
			t.Errorf("%s: payload %v err %v", tc.goos, res.Payload, err)
		}
	}
	// Other reads every OS without a function of its own.
	c.Other = read("other")
	for goos, want := range map[string]string{"linux": "linux", "darwin": "other", "plan9": "other"} {
		res, err := c.Collect(context.Background(), platformtest.Replay{Live: &platform.Live{}, OS: goos})
		if err != nil || res.Payload != want {
			t.Errorf("%s with Other: payload %v err %v", goos, res.Payload, err)
		}
	}
}
