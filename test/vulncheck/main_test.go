package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures are govulncheck v1.9.0 -format json output, recorded on this
// module and pruned to one finding per vulnerability and level.
func TestCheck(t *testing.T) {
	accept5298 := map[string]string{"GO-2026-5298": "fixed in the version used"}
	tests := []struct {
		name     string
		fixture  string
		stdin    string
		accepted map[string]string
		wantErr  string
		wantOut  []string
	}{
		{name: "patched toolchain, false positive accepted", fixture: "go1.27.3-all.json", accepted: accept5298,
			wantOut: []string{"accepted  GO-2026-5298", "reason: fixed in the version used", "0 called vulnerabilities not accepted, 1 accepted, 2 in required modules but not called"}},
		{name: "patched toolchain, nothing accepted", fixture: "go1.27.3-all.json",
			wantErr: "1 vulnerable functions are called", wantOut: []string{"CALLED    GO-2026-5298 github.com/google/go-attestation@v0.6.4 (fixed: no fixed version)"}},
		{name: "old toolchain: standard library calls fail", fixture: "go1.26.8-server-ingest.json", accepted: accept5298,
			wantErr: "8 vulnerable functions are called", wantOut: []string{"CALLED    GO-2026-6617 stdlib@v1.26.8 (fixed: v1.26.9): HTTP/2 server crash"}},
		{name: "empty input", stdin: "", wantErr: "no govulncheck output"},
		{name: "not govulncheck output", stdin: "Your code is affected by 3 vulnerabilities", wantErr: "reading govulncheck output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.stdin)
			if tt.fixture != "" {
				var err error
				if in, err = os.ReadFile(filepath.Join("testdata", tt.fixture)); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			err := check(bytes.NewReader(in), &out, tt.accepted)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("check: %v; want error %q\n%s", err, tt.wantErr, out.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestReadAccepted(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, text, wantErr string
		want                int
	}{
		{name: "ids with reasons and comments", text: "# c\n\nGO-1 because\nGO-2  also because \n", want: 2},
		{name: "id without a reason", text: "GO-1\n", wantErr: "GO-1 has no reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "accepted.txt")
			if err := os.WriteFile(p, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readAccepted(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != tt.want {
				t.Fatalf("got %v, %v; want %d entries", got, err, tt.want)
			}
		})
	}
	if _, err := readAccepted(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing accepted file was not an error")
	}
	// The project's own list must parse.
	if _, err := readAccepted("accepted.txt"); err != nil {
		t.Fatal(err)
	}
}
