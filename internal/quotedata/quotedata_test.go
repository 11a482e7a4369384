package quotedata

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func TestCompute(t *testing.T) {
	// Known answer: SHA-256("n" || SHA-256("r")), computed independently
	// with `printf r | sha256sum` and `(printf n; printf %s "$h" | xxd -r -p) | sha256sum`.
	tests := []struct {
		nonce, report string
		want          string
	}{
		{"n", "r", "6d2a316e78944a9049fafdf3aba1d1e39801db54d67d8b202847359fec4c3125"},
	}
	for _, tc := range tests {
		got := hex.EncodeToString(Compute([]byte(tc.nonce), []byte(tc.report)))
		if got != tc.want {
			t.Errorf("Compute(%q, %q) = %s, want %s", tc.nonce, tc.report, got, tc.want)
		}
	}
	a := Compute([]byte("nonce-1"), []byte("report"))
	for _, other := range [][]byte{Compute([]byte("nonce-2"), []byte("report")), Compute([]byte("nonce-1"), []byte("report!")), Compute([]byte("nonce-1r"), []byte("eport"))} {
		if bytes.Equal(a, other) {
			t.Error("different nonce or report gave the same qualifying data")
		}
	}
	if len(a) != Size {
		t.Errorf("len = %d, want %d", len(a), Size)
	}
}
