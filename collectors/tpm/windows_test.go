package tpm

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseSpecVersion(t *testing.T) {
	for in, want := range map[string]string{
		"2.0, 0, 1.59": "2.0", "1.2, 2, 3": "1.2", " 2.0 ,0,1.38": "2.0", "2.0": "2.0",
		"": "", "Not Supported": "", "2, 0": "", ".0, 1": "", "2.x, 0": "", "-1.2, 0": "", "2222.0, 0": "",
	} {
		if got := parseSpecVersion(in); got != want {
			t.Errorf("parseSpecVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseWin32Tpm(t *testing.T) {
	tests := []struct {
		file    string
		present bool
		version string
		manuf   string
	}{
		{"tpm20-intel.json", true, "2.0", "INTC"},
		{"tpm12-infineon.json", true, "1.2", "IFX"},
		{"none.json", false, "", ""},
		{"tpm20-odd.json", true, "", "NTC"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var rows []win32Tpm
			if err := json.Unmarshal([]byte(string(platformtest.ReadFixture(t, "windows", tt.file))), &rows); err != nil {
				t.Fatal(err)
			}
			p := parseWin32Tpm(rows)
			if p.Present != tt.present || p.Version != tt.version {
				t.Errorf("got %+v", p)
			}
			if tt.present && (len(p.Devices) != 1 || p.Devices[0].Manufacturer != tt.manuf || !strings.Contains(p.Devices[0].Description, "SpecVersion")) {
				t.Errorf("devices %+v", p.Devices)
			}
		})
	}
}

func TestCollectWindows(t *testing.T) {
	key := tpmNamespace + "|" + tpmQuery
	host := func(rows map[string]string) platformtest.Replay {
		return platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: rows}
	}
	res, err := New().Collect(context.Background(), host(map[string]string{key: string(platformtest.ReadFixture(t, "windows", "tpm20-intel.json"))}))
	if err != nil {
		t.Fatal(err)
	}
	want := Payload{Present: true, Version: "2.0", Devices: []Device{{Name: "tpm0", Version: "2.0", Manufacturer: "INTC",
		Description: `SpecVersion "2.0, 0, 1.59", firmware 600.18.0.0, enabled true, activated true, owned true`}}}
	if got := res.Payload.(Payload); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if len(res.Sources) != 1 || res.Sources[0].Kind != "wmi" {
		t.Errorf("sources %+v", res.Sources)
	}
	res, err = New().Collect(context.Background(), host(map[string]string{key: `[]`}))
	if err != nil || res.Payload.(Payload).Present {
		t.Errorf("no rows: %+v %v", res, err)
	}
	res, err = New().Collect(context.Background(), host(map[string]string{}))
	if !errors.Is(err, fs.ErrNotExist) || res.Payload != nil {
		t.Errorf("class missing: %+v %v", res, err)
	}
	if _, err := New().Collect(context.Background(), host(map[string]string{key: `[{"SpecVersion": 2}]`})); err == nil {
		t.Error("garbage: want error")
	}
}

func FuzzParseSpecVersion(f *testing.F) {
	for _, s := range []string{"2.0, 0, 1.59", "1.2, 2, 3", "", "Not Supported", "2.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := parseSpecVersion(s)
		if v == "" {
			return
		}
		if !strings.HasPrefix(strings.TrimSpace(s), v) || strings.ContainsAny(v, ", ") || strings.Count(v, ".") != 1 {
			t.Errorf("%q → %q", s, v)
		}
	})
}
