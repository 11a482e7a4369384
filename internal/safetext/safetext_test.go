package safetext

import (
	"strings"
	"testing"
)

func TestTerminal(t *testing.T) {
	tests := []struct{ in, want string }{
		{"laptop-1.example", "laptop-1.example"},
		{"Ünïcode ok", "Ünïcode ok"},
		{"\x1b[2K\rDevice forged (dev_x): COMPLIANT\n", `\x1b[2K\rDevice forged (dev_x): COMPLIANT\n`},
		{"tab\tand\x07bell\x7f", `tab\tand\x07bell\x7f`},
		{"c1 \u009b31m", `c1 \x9b31m`},
		{"abc\u202edcba", `abc\u202edcba`},
		{"bad \xff utf8", "bad \uFFFD utf8"},
	}
	for _, tt := range tests {
		if got := Terminal(tt.in); got != tt.want {
			t.Errorf("Terminal(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := Terminal(tt.in); strings.ContainsAny(got, "\x1b\n\r\t\x07\u202e") {
			t.Errorf("Terminal(%q) = %q still holds a control character", tt.in, got)
		}
		if Printable(tt.in) != (tt.in == tt.want) {
			t.Errorf("Printable(%q) = %v", tt.in, Printable(tt.in))
		}
	}
}

func TestCSVCell(t *testing.T) {
	tests := []struct{ in, want string }{
		{`=HYPERLINK("http://x?"&A1,"click")`, `'=HYPERLINK("http://x?"&A1,"click")`},
		{"+1", "'+1"}, {"-2+3", "'-2+3"}, {"@SUM(A1)", "'@SUM(A1)"}, {"\tx", `'\tx`}, {"\rx", `'\rx`},
		{"a\x1b[2Kb", `a\x1b[2Kb`},
		{"laptop", "laptop"}, {"", ""}, {"a=b", "a=b"},
	}
	for _, tt := range tests {
		if got := CSVCell(tt.in); got != tt.want {
			t.Errorf("CSVCell(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzTerminal(f *testing.F) {
	f.Add("\x1b[2K\rforged\n")
	f.Add("ok")
	f.Fuzz(func(t *testing.T, s string) {
		got := Terminal(s)
		if !Printable(got) {
			t.Fatalf("Terminal(%q) = %q is not printable", s, got)
		}
	})
}
