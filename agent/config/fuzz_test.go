package config

import (
	"os"
	"testing"
)

// FuzzParseFile: any agent.yaml is parsed or refused, never a panic, and
// every key accepted is a known setting.
func FuzzParseFile(f *testing.F) {
	for _, s := range []string{"", "server: a:1\n", "# c\n#server: x\n", "server: [\n", "- a\n", "server: {a: b}\n", "enroll_secret: ~\n", "a: &x 1\nb: *x\n"} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("../../installers/linux/agent.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseFile(b)
		if err != nil {
			return
		}
		for k := range got {
			if _, ok := Lookup(k); !ok {
				t.Fatalf("accepted unknown key %q", k)
			}
		}
	})
}

// FuzzParsePlist: managed preferences come from a file an MDM writes; any
// bytes are parsed or refused, never a panic.
func FuzzParsePlist(f *testing.F) {
	if b, err := os.ReadFile("testdata/managed.plist"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("bplist00"))
	f.Add([]byte(`<plist version="1.0"><dict><key>Server</key><integer>1</integer></dict></plist>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParsePlist(b)
	})
}

// FuzzEdit: writing settings into any parseable file keeps it parseable
// and yields exactly the values set.
func FuzzEdit(f *testing.F) {
	f.Add([]byte("# c\n#server: x\ninterval: 1h\n"), "a.example:1", "30m")
	f.Add([]byte("server: b:2"), "[::1]:9", "1s")
	f.Fuzz(func(t *testing.T, old []byte, server, interval string) {
		if _, err := ParseFile(old); err != nil {
			return
		}
		set := map[string]string{Server: server, Interval: interval}
		out, err := edit(old, set)
		if err != nil {
			return
		}
		got, err := ParseFile(out)
		if err != nil {
			t.Fatalf("edited file does not parse: %v\n%s", err, out)
		}
		if got[Server] != server || got[Interval] != interval {
			t.Fatalf("got %q %q, want %q %q\n%s", got[Server], got[Interval], server, interval, out)
		}
	})
}
