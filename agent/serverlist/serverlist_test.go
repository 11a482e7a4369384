package serverlist_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/evident-dev/evident/agent/serverlist"
)

func TestParse(t *testing.T) {
	seventeen := strings.TrimSuffix(strings.Repeat("h.example:1,", serverlist.Max+1), ",")
	sixteen := make([]string, serverlist.Max)
	for i := range sixteen {
		sixteen[i] = "h" + string(rune('a'+i)) + ".example:8443"
	}
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // substring; "" means it parses
	}{
		{name: "one", in: "evident.example:8443", want: []string{"evident.example:8443"}},
		{name: "one IP", in: "127.0.0.1:1", want: []string{"127.0.0.1:1"}},
		{name: "IPv6", in: "[::1]:65535", want: []string{"[::1]:65535"}},
		{name: "several", in: "a.example:8443,b.example:8443,10.0.0.3:9000",
			want: []string{"a.example:8443", "b.example:8443", "10.0.0.3:9000"}},
		{name: "spaces around entries", in: " a.example:8443 ,\tb.example:8443 ",
			want: []string{"a.example:8443", "b.example:8443"}},
		{name: "the most", in: strings.Join(sixteen, ","), want: sixteen},

		{name: "no port", in: "no-port", wantErr: "want HOST:PORT"},
		{name: "no host", in: ":8443", wantErr: "want HOST:PORT"},
		{name: "port zero", in: "a.example:0", wantErr: "port must be 1-65535"},
		{name: "port too big", in: "a.example:65536", wantErr: "port must be 1-65535"},
		{name: "port not a number", in: "a.example:https", wantErr: "port must be 1-65535"},
		{name: "port signed", in: "a.example:+80", wantErr: "port must be 1-65535"},
		{name: "bad port named", in: "a.example:1,b.example:99999", wantErr: `address 2 "b.example:99999": port must be 1-65535`},
		{name: "space inside a host", in: "a example:1", wantErr: `host "a example" is neither`},
		{name: "URL, not an address", in: "dns:///a.example:1", wantErr: "want HOST:PORT"},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "blank", in: "  ", wantErr: "empty"},
		{name: "empty entry", in: "a.example:1,,b.example:2", wantErr: `address 2 "": empty`},
		{name: "trailing comma", in: "a.example:1,", wantErr: `address 2 "": empty`},
		{name: "missing port named", in: "a.example:1, b.example", wantErr: `address 2 "b.example": want HOST:PORT`},
		{name: "repeated", in: "a.example:1, a.example:1", wantErr: `address 2 "a.example:1": listed twice`},
		{name: "too many", in: seventeen, wantErr: "17 addresses; at most 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serverlist.Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Parse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestHost(t *testing.T) {
	for in, want := range map[string]string{"a.example:8443": "a.example", "[::1]:1": "::1", "10.0.0.1:2": "10.0.0.1", "bare": "bare"} {
		if got := serverlist.Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewClientNeedsAnAddress(t *testing.T) {
	if _, err := serverlist.NewClient(nil); err == nil {
		t.Fatal("NewClient with no address succeeded")
	}
}
