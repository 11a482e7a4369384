package evidence_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/evident-dev/evident/proto/evidence"
)

func TestDecodeEveryKnownVersion(t *testing.T) {
	for _, c := range evidence.Collectors() {
		cur, ok := evidence.CurrentVersion(c)
		if !ok || cur < 1 {
			t.Fatalf("CurrentVersion(%s) = %d, %v", c, cur, ok)
		}
		// Version 0 (not stated) reads as 1; 1..current decode.
		for v := 0; v <= cur; v++ {
			got, err := evidence.Decode[any](c, v, []byte(`{"added_by_nobody":1}`))
			if err != nil || got.(map[string]any)["added_by_nobody"] != 1.0 {
				t.Errorf("Decode(%s, v%d) = %v, %v", c, v, got, err)
			}
		}
		_, err := evidence.Decode[any](c, cur+1, []byte(`{}`))
		var newer *evidence.NewerError
		want := fmt.Sprintf("%s payload from parser v%d, newer than this server understands (v%d): upgrade the server", c, cur+1, cur)
		if !errors.As(err, &newer) || err.Error() != want {
			t.Errorf("Decode(%s, v%d) error = %v; want %q", c, cur+1, err, want)
		}
	}
}

func TestDecodeTyped(t *testing.T) {
	p, err := evidence.Decode[evidence.FirewallPayload](evidence.Firewall, 1, []byte(`{"enabled":true,"backends":[{"name":"nftables","active":true}]}`))
	if err != nil || !p.Enabled || p.Verdict != "" || len(p.Backends) != 1 || p.Backends[0].Name != "nftables" {
		t.Errorf("v1 firewall payload = %+v, %v", p, err)
	}
	if _, err := evidence.Decode[evidence.FirewallPayload](evidence.Patches, 1, []byte(`{}`)); err == nil {
		t.Error("a firewall payload type accepted for patches")
	}
	if _, err := evidence.Decode[any]("usb", 1, []byte(`{}`)); err == nil {
		t.Error("a collector without a contract decoded")
	}
	if _, err := evidence.Decode[evidence.TPMPayload](evidence.TPM, 1, []byte(`{"present":"yes"}`)); err == nil {
		t.Error("a payload that does not fit its type decoded")
	}
}

// A renamed field: v2 calls v1's "on" "enabled"; the conversion registered
// for v1 makes both read as today's type.
func TestDecodeConversion(t *testing.T) {
	type today struct {
		Enabled bool `json:"enabled"`
	}
	restore := evidence.WithContract[today]("renamed", 2, map[int]func([]byte) (any, error){
		1: func(raw []byte) (any, error) {
			var v1 struct {
				On bool `json:"on"`
			}
			err := json.Unmarshal(raw, &v1)
			return today{Enabled: v1.On}, err
		},
	})
	defer restore()
	for _, tc := range []struct {
		v   int
		raw string
	}{{0, `{"on":true}`}, {1, `{"on":true}`}, {2, `{"enabled":true}`}} {
		got, err := evidence.Decode[today]("renamed", tc.v, []byte(tc.raw))
		if err != nil || !got.Enabled {
			t.Errorf("v%d %s = %+v, %v", tc.v, tc.raw, got, err)
		}
		anyGot, err := evidence.Decode[any]("renamed", tc.v, []byte(tc.raw))
		if m, _ := anyGot.(map[string]any); err != nil || m["enabled"] != true {
			t.Errorf("v%d %s as JSON values = %v, %v", tc.v, tc.raw, anyGot, err)
		}
	}
}

var update = flag.Bool("update", false, "rewrite testdata/fields.txt")

// TestPayloadFieldsOnlyGrow holds every payload field as stored payloads
// and golden files name it (JSON path, tag options, Go type). A field may
// be added (record it with -update); one that disappears or changes breaks
// the payloads already stored.
func TestPayloadFieldsOnlyGrow(t *testing.T) {
	var got []string
	for _, c := range evidence.Collectors() {
		got = append(got, fields(c, "", evidence.PayloadType(c))...)
	}
	path := filepath.Join("testdata", "fields.txt")
	text := strings.Join(got, "\n") + "\n"
	if *update {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recorded := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for _, r := range recorded {
		if !slices.Contains(got, r) {
			t.Errorf("payload field removed or changed: %s\n\tstored payloads and golden files depend on it: a rename or a change of meaning "+
				"takes a new parser version with a conversion for the older ones (see evidence.Decode)", r)
		}
	}
	for _, g := range got {
		if !slices.Contains(recorded, g) {
			t.Errorf("new payload field %s: record it with go test ./proto/evidence -run TestPayloadFieldsOnlyGrow -update", g)
		}
	}
}

// jsonType names t as JSON sees it: Go type names of structs may change,
// their shape may not.
func jsonType(t reflect.Type) string {
	switch {
	case t.Kind() == reflect.Pointer:
		return "*" + jsonType(t.Elem())
	case t.Kind() == reflect.Slice:
		return "[]" + jsonType(t.Elem())
	case t.Kind() == reflect.Struct && t.PkgPath() != "time":
		return "object"
	}
	return t.String()
}

// fields lists "collector path options type" for every JSON field of t.
func fields(collector, prefix string, t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			name = f.Name
		}
		path := prefix + "." + name
		out = append(out, fmt.Sprintf("%s %s %q %s", collector, path, opts, jsonType(f.Type)))
		inner := f.Type
		for inner.Kind() == reflect.Pointer || inner.Kind() == reflect.Slice {
			if inner.Kind() == reflect.Slice {
				path += "[]"
			}
			inner = inner.Elem()
		}
		if inner.Kind() == reflect.Struct && inner.PkgPath() == t.PkgPath() {
			out = append(out, fields(collector, path, inner)...)
		}
	}
	return out
}
