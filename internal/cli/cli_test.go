package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
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
