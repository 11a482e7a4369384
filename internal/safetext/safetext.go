// Package safetext makes strings that devices supplied (hostnames, OS
// versions, collector excerpts, reasons built from them) inert in the
// outputs auditors open: a terminal, where an escape sequence or a newline
// could erase a line and forge another, and a spreadsheet, where a cell
// starting with "=" runs as a formula.
package safetext

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Terminal returns s with every control character, escape and
// bidirectional formatting character written visibly (\x1b, \n, \u202e),
// and invalid UTF-8 as U+FFFD: printed, it cannot move the cursor, start a
// line or reorder text. A string without any is returned as is.
func Terminal(s string) string { return escape(s, false) }

// escape writes control and bidirectional characters of s visibly, and
// invalid UTF-8 as U+FFFD; with layout, newlines and tabs are kept.
func escape(s string, layout bool) string {
	hide := func(r rune) bool { return (control(r) || bidi(r)) && !(layout && (r == '\n' || r == '\t')) }
	if utf8.ValidString(s) && !strings.ContainsFunc(s, hide) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteRune('\uFFFD')
		case !hide(r):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case bidi(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\x%02x`, r)
		}
	}
	return b.String()
}

// control reports the C0 and C1 control characters and DEL.
func control(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) }

func needsEscape(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return control(r) || bidi(r) })
}

// bidi reports the characters that reorder displayed text (Trojan Source).
func bidi(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// Printable reports whether s holds no control, escape or bidirectional
// formatting character and is valid UTF-8: what a hostname or an OS
// version may be.
func Printable(s string) bool { return !needsEscape(s) }

// CSVCell neutralises a cell a spreadsheet would evaluate (OWASP CSV
// injection): one starting with = + - @, a tab or a carriage return gets a
// leading single quote, which spreadsheets show as text and do not run. Its
// control characters are written visibly too (Terminal): a CSV is also read
// with cat.
func CSVCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		s = "'" + s
	}
	return Terminal(s)
}

// CSVRow is CSVCell over a row.
func CSVRow(row []string) []string {
	out := make([]string, len(row))
	for i, c := range row {
		out[i] = CSVCell(c)
	}
	return out
}

// Args returns args with every string made Terminal-safe, for fmt's
// printing functions whose format is the program's own.
func Args(args ...any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if s, ok := a.(string); ok {
			out[i] = Terminal(s)
		} else {
			out[i] = a
		}
	}
	return out
}

// JSONWriter wraps w so that JSON written through it carries no raw
// bidirectional formatting character (encoding/json escapes control
// characters but not these): each is written as its \u escape, which is the
// same JSON. It must only see JSON, where such characters can only be
// inside strings.
func JSONWriter(w io.Writer) io.Writer { return jsonWriter{w} }

type jsonWriter struct{ w io.Writer }

func (j jsonWriter) Write(p []byte) (int, error) {
	if !bytes.ContainsFunc(p, bidi) {
		return j.w.Write(p)
	}
	var b bytes.Buffer
	for _, r := range string(p) {
		if bidi(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
		} else {
			b.WriteRune(r)
		}
	}
	if _, err := j.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Visible rewrites, in text meant for people (a rendered page), the
// control characters other than newline and tab, and the bidirectional
// formatting characters, as visible escapes: in a page they would
// otherwise reorder or hide what an auditor reads.
func Visible(s string) string { return escape(s, true) }
