package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseAndExitCode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"ok", []string{"--n", "3"}, 0, ""},
		{"help", []string{"-h"}, 0, "does things"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"positional argument", []string{"extra"}, 2, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			fs := NewFlagSet("x", &stderr, "x: does things")
			fs.Int("n", 0, "a number")
			code := ExitCode("prog", Parse(fs, tc.args), &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantOut) {
				t.Errorf("code %d, stderr %q; want %d containing %q", code, stderr.String(), tc.wantCode, tc.wantOut)
			}
		})
	}
	var stderr bytes.Buffer
	if code := ExitCode("prog", errors.New("disk full"), &stderr); code != 1 || stderr.String() != "prog: disk full\n" {
		t.Errorf("failure: code %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := ExitCode("prog", fmt.Errorf("wrapped: %w", WithCode(78, errors.New("bad config"))), &stderr); code != 78 || stderr.String() != "prog: wrapped: bad config\n" {
		t.Errorf("coded: code %d, stderr %q", code, stderr.String())
	}
	if WithCode(78, nil) != nil {
		t.Error("WithCode(nil) is not nil")
	}
	if code := ExitCode("prog", flag.ErrHelp, &stderr); code != 0 {
		t.Errorf("ErrHelp: code %d", code)
	}
}

func TestParseOne(t *testing.T) {
	tests := []struct {
		args    []string
		want    string
		wantErr error
		wantX   string
	}{
		{[]string{"file", "-x", "1"}, "file", nil, "1"},
		{[]string{"-x", "2", "file"}, "file", nil, "2"},
		{[]string{"-x", "3"}, "", nil, "3"},
		{nil, "", nil, ""},
		{[]string{"a", "b"}, "", ErrUsage, ""},
		{[]string{"-x", "1", "a", "b"}, "a", ErrUsage, "1"},
		{[]string{"a", "-nope"}, "", ErrUsage, ""},
	}
	for _, tc := range tests {
		fs := NewFlagSet("t", io.Discard, "")
		x := fs.String("x", "", "")
		got, err := ParseOne(fs, tc.args)
		if !errors.Is(err, tc.wantErr) || (err == nil && (got != tc.want || *x != tc.wantX)) {
			t.Errorf("ParseOne(%q) = %q, x=%q, %v; want %q, x=%q, %v", tc.args, got, *x, err, tc.want, tc.wantX, tc.wantErr)
		}
	}
}

// TestPrintDefaultsKeepsBackquotes: a back-quoted command in a flag's help
// stays in the text instead of becoming the value's placeholder; without
// back quotes the output is flag.PrintDefaults' own, defaults included.
func TestPrintDefaultsKeepsBackquotes(t *testing.T) {
	var out strings.Builder
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(&out)
	fs.String("web-listen", "", "serve the web UI here. Log in with a token\nfrom `evident-server token create`.")
	PrintDefaults(fs)
	want := "  -web-listen string\n    \tserve the web UI here. Log in with a token\n    \tfrom `evident-server token create`.\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}

	var help strings.Builder
	cmd := NewFlagSet("run", &help, "evident-server run: serve.")
	cmd.String("web-listen", "", "log in with a token from `evident-server token create`")
	cmd.Usage()
	if !strings.Contains(help.String(), "  -web-listen string\n") || strings.Contains(help.String(), "-web-listen evident-server") {
		t.Errorf("-h prints\n%s", help.String())
	}

	var ours, theirs strings.Builder
	build := func(w io.Writer) *flag.FlagSet {
		fs := flag.NewFlagSet("y", flag.ContinueOnError)
		fs.SetOutput(w)
		fs.String("name", "evident", "a name")
		fs.String("empty", "", "nothing by default\nover two lines")
		fs.Bool("v", false, "verbose")
		fs.Bool("force", true, "force")
		fs.Duration("timeout", 30*time.Second, "how long")
		fs.Duration("zero", 0, "no default")
		fs.Int("n", 3, "count")
		fs.Int64("max-bytes", 0, "bound")
		fs.Func("each", "called for each", func(string) error { return nil })
		return fs
	}
	PrintDefaults(build(&ours))
	build(&theirs).PrintDefaults()
	if ours.String() != theirs.String() {
		t.Errorf("without back quotes, got\n%s\nflag.PrintDefaults prints\n%s", ours.String(), theirs.String())
	}
}

// TestLogHandler: "json" logs one JSON object a line, with the level and
// the attributes as fields; anything else is slog's text.
func TestLogHandler(t *testing.T) {
	var b strings.Builder
	slog.New(LogHandler(&b, "json", slog.LevelInfo)).Info("agent connected", "agent_version", "1.0.0")
	var rec map[string]any
	if err := json.Unmarshal([]byte(b.String()), &rec); err != nil || rec["msg"] != "agent connected" || rec["level"] != "INFO" || rec["agent_version"] != "1.0.0" {
		t.Errorf("json log line %q: %v", b.String(), err)
	}
	b.Reset()
	log := slog.New(LogHandler(&b, "text", slog.LevelWarn))
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	if got := b.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `level=WARN msg=shown k=v`) {
		t.Errorf("text log %q", got)
	}
}
