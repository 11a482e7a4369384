package enrolltoken

import (
	"bytes"
	"strings"
	"testing"
)

const (
	testSecret = "mfrggzdfmztwq2lknnwg23tpobyxe43u" // 32 base32 chars, as NewSecret prints
	testPin    = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)

var parseTests = []struct {
	name    string
	in      string
	want    Token
	wantErr string // substring; empty means success
}{
	{name: "good", in: "evt1." + testSecret + "." + testPin, want: Token{Secret: testSecret, CAPin: testPin}},
	{name: "whitespace trimmed", in: "  \tevt1." + testSecret + "." + testPin + "\r\n", want: Token{Secret: testSecret, CAPin: testPin}},
	{name: "upper-case pin lowered", in: "evt1." + testSecret + "." + strings.ToUpper(testPin), want: Token{Secret: testSecret, CAPin: testPin}},
	{name: "minimum secret length", in: "evt1." + testSecret[:16] + "." + testPin, want: Token{Secret: testSecret[:16], CAPin: testPin}},
	{name: "empty", in: "", wantErr: "want evt1.<secret>.<ca-sha256>"},
	{name: "wrong prefix", in: "evt2." + testSecret + "." + testPin, wantErr: "want evt1.<secret>.<ca-sha256>"},
	{name: "prefix case matters", in: "EVT1." + testSecret + "." + testPin, wantErr: "want evt1.<secret>.<ca-sha256>"},
	{name: "two parts", in: "evt1." + testSecret, wantErr: "want evt1.<secret>.<ca-sha256>"},
	{name: "four parts", in: "evt1." + testSecret + "." + testPin + ".x", wantErr: "want evt1.<secret>.<ca-sha256>"},
	{name: "short secret", in: "evt1." + testSecret[:15] + "." + testPin, wantErr: "secret part is too short"},
	{name: "empty secret", in: "evt1.." + testPin, wantErr: "secret part is too short"},
	{name: "bad hex pin", in: "evt1." + testSecret + "." + strings.Repeat("zz", 32), wantErr: "CA pin must be 64 hex characters"},
	{name: "odd-length pin", in: "evt1." + testSecret + "." + testPin[:63], wantErr: "CA pin must be 64 hex characters"},
	{name: "short pin", in: "evt1." + testSecret + "." + testPin[:62], wantErr: "CA pin must be 64 hex characters"},
	{name: "long pin", in: "evt1." + testSecret + "." + testPin + "00", wantErr: "CA pin must be 64 hex characters"},
	{name: "empty pin", in: "evt1." + testSecret + ".", wantErr: "CA pin must be 64 hex characters"},
	{name: "inner whitespace in pin", in: "evt1." + testSecret + ". " + testPin[1:], wantErr: "CA pin must be 64 hex characters"},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				if got != (Token{}) {
					t.Errorf("Parse(%q) returned %+v alongside an error, want the zero Token", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseErrorsNeverEchoSecret: the token is pasted into MDM profiles and
// logs; a parse error must not leak the secret it was given.
func TestParseErrorsNeverEchoSecret(t *testing.T) {
	secret := "s3cr3t-do-not-log-" + testSecret
	for _, in := range []string{
		"evt2." + secret + "." + testPin,
		"evt1." + secret,
		"evt1." + secret + ".nothex",
		"evt1." + secret + "." + testPin[:10],
		"evt1." + secret + "." + testPin + ".extra",
		secret,
	} {
		_, err := Parse(in)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded, want an error", in)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), testSecret) {
			t.Errorf("Parse(%q) error %q contains the secret", in, err)
		}
	}
}

func TestStringParseRoundTrip(t *testing.T) {
	tests := []Token{
		{Secret: testSecret, CAPin: testPin},
		{Secret: NewSecret(), CAPin: testPin},
		{Secret: "0123456789abcdef", CAPin: strings.Repeat("0", 64)},
	}
	for _, tok := range tests {
		s := tok.String()
		if !strings.HasPrefix(s, "evt1.") {
			t.Errorf("String() = %q, want prefix evt1.", s)
		}
		got, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if got != tok {
			t.Errorf("Parse(String()) = %+v, want %+v", got, tok)
		}
	}
}

func TestNewSecret(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if len(a) != 32 {
		t.Errorf("NewSecret() = %q (%d chars), want 32 base32 characters", a, len(a))
	}
	if a == b {
		t.Errorf("two NewSecret() calls returned the same %q", a)
	}
	if strings.ContainsAny(a, ".= \n") || a != strings.ToLower(a) {
		t.Errorf("NewSecret() = %q: want lower-case base32 without padding or dots", a)
	}
}

func TestHashSecret(t *testing.T) {
	h1, h2 := HashSecret(testSecret), HashSecret(testSecret)
	if len(h1) != 32 {
		t.Fatalf("HashSecret length = %d, want 32 (SHA-256)", len(h1))
	}
	if !bytes.Equal(h1, h2) {
		t.Errorf("HashSecret is not deterministic: %x vs %x", h1, h2)
	}
	for _, other := range []string{testSecret + "x", strings.ToUpper(testSecret), "", testSecret[:31]} {
		if bytes.Equal(h1, HashSecret(other)) {
			t.Errorf("HashSecret(%q) equals HashSecret(%q)", other, testSecret)
		}
	}
	if bytes.Contains(h1, []byte(testSecret)) {
		t.Errorf("hash contains the secret")
	}
}

// FuzzParse: Parse never panics, and any token it accepts prints back (via
// String) to a token that parses to the same value.
func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if tok != (Token{}) {
				t.Fatalf("Parse(%q) returned %+v alongside error %v", s, tok, err)
			}
			return
		}
		if len(tok.Secret) < 16 || len(tok.CAPin) != 64 {
			t.Fatalf("Parse(%q) accepted %+v", s, tok)
		}
		again, err := Parse(tok.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, but Parse(String()) = %v", s, tok, err)
		}
		if again != tok {
			t.Fatalf("round trip of %q: %+v, then %+v", s, tok, again)
		}
	})
}
