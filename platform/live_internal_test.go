package platform

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestBoundedBuffer(t *testing.T) {
	tests := []struct {
		name      string
		limit     int64
		writes    []string
		want      string
		truncated bool
	}{
		{name: "under", limit: 10, writes: []string{"abc", "def"}, want: "abcdef"},
		{name: "exactly", limit: 6, writes: []string{"abc", "def"}, want: "abcdef"},
		{name: "cut inside a write", limit: 4, writes: []string{"abc", "def"}, want: "abcd", truncated: true},
		{name: "writes after full", limit: 3, writes: []string{"abc", "def", "g"}, want: "abc", truncated: true},
		{name: "empty write after full", limit: 3, writes: []string{"abc", ""}, want: "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &boundedBuffer{limit: tt.limit}
			for _, w := range tt.writes {
				// The writer must always report the whole write as taken,
				// or the command would see a broken pipe.
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if string(b.Bytes()) != tt.want || b.truncated != tt.truncated {
				t.Errorf("got %q truncated=%v, want %q truncated=%v", b.Bytes(), b.truncated, tt.want, tt.truncated)
			}
		})
	}
}

// os/exec copies a command's output with io.Copy, which prefers the
// destination's ReadFrom to its Write: the bound must hold on that path too.
func TestBoundedBufferIOCopy(t *testing.T) {
	b := &boundedBuffer{limit: 100}
	n, err := io.Copy(b, strings.NewReader(strings.Repeat("x", 10000)))
	if err != nil || n != 10000 {
		t.Fatalf("io.Copy = %d, %v", n, err)
	}
	if len(b.Bytes()) != 100 || !b.truncated {
		t.Errorf("kept %d bytes, truncated=%v; want 100, true", len(b.Bytes()), b.truncated)
	}
	if !bytes.Equal(b.Bytes(), bytes.Repeat([]byte{'x'}, 100)) {
		t.Errorf("kept %q", b.Bytes())
	}
}
