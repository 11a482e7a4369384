package osinfo_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/collectors/all"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

// windowsManifest is the part of a host snapshot manifest (README: Architecture, host snapshots) the
// Windows collectors read.
type windowsManifest struct {
	GOOS string `json:"goos"`
	WMI  []struct {
		Namespace string `json:"namespace"`
		Query     string `json:"query"`
		Result    string `json:"result"`
	} `json:"wmi"`
	Registry []struct {
		Key     string                  `json:"key"`
		Name    string                  `json:"name"`
		Value   *platform.RegistryValue `json:"value"`
		Missing bool                    `json:"missing"`
	} `json:"registry"`
}

// TestWindowsSnapshots replays the reconstructed Windows snapshots of the
// end-to-end golden tests through every collector: each must succeed
// without a failed read, and every WMI query and registry value a
// collector reads must be listed in the manifest (absent is "not found").
func TestWindowsSnapshots(t *testing.T) {
	dirs, _ := filepath.Glob("../../test/e2e/testdata/snapshots/windows-*")
	if len(dirs) != 3 {
		t.Fatalf("want 3 windows snapshots, found %v", dirs)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			var m windowsManifest
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: m.GOOS,
				WMIResults: map[string]string{}, RegistryValues: map[string]platform.RegistryValue{}}
			listed := map[string]bool{}
			for _, w := range m.WMI {
				rows, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(w.Result)))
				if err != nil {
					t.Fatal(err)
				}
				h.WMIResults[w.Namespace+"|"+w.Query] = string(rows)
			}
			for _, r := range m.Registry {
				listed[`HKLM\`+r.Key+`\`+r.Name] = true
				if r.Value != nil && !r.Missing {
					h.RegistryValues[r.Key+"|"+r.Name] = *r.Value
				}
			}
			now := func() time.Time { return time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC) }
			obs := map[string]collectors.Observation{}
			for _, c := range all.Default() {
				o := collectors.Run(context.Background(), c, h, 10*time.Second, now)
				obs[o.Collector] = o
				if o.Status != collectors.StatusOK {
					t.Errorf("%s: %s %s", o.Collector, o.Status, o.Error)
				}
				for _, s := range o.Sources {
					if s.Error != "" {
						t.Errorf("%s: failed read %s: %s", o.Collector, s.Ref, s.Error)
					}
					if s.Kind == "registry" && !listed[s.Ref] {
						t.Errorf("%s reads %s, which the manifest does not list", o.Collector, s.Ref)
					}
				}
			}
			payload := func(name string) string { return string(obs[name].Payload) }
			contains := func(name string, subs ...string) {
				t.Helper()
				for _, s := range subs {
					if !strings.Contains(payload(name), s) {
						t.Errorf("%s payload lacks %s:\n%s", name, s, payload(name))
					}
				}
			}
			contains("osinfo", `"hostname":"LAPTOP-7F3K"`, `"os":"windows"`)
			switch filepath.Base(dir) {
			case "windows-compliant":
				contains("diskencryption", `"state":"encrypted"`)
				contains("firewall", `"enabled":true,"inbound_default_deny":true`)
				contains("patches", `"manager":""`, `"version_id":"11 25H2"`, `"build":"26200.7171"`, `"end_of_life":"2027-10-12T00:00:00Z"`,
					`"last_successful_update":"2026-11-12T00:00:00Z"`, `"auto_updates":{"enabled":true`)
				contains("secureboot", `"uefi":true,"enabled":true`)
				contains("tpm", `"present":true,"version":"2.0"`)
			case "windows-noncompliant":
				contains("diskencryption", `"encrypted":false`, `"state":"off"`)
				contains("firewall", `"enabled":false,"inbound_default_deny":false`)
				contains("patches", `"version_id":"10 22H2"`, `"end_of_life":"2025-10-14T00:00:00Z"`, `"auto_updates":{"enabled":false`)
				contains("secureboot", `"uefi":true,"enabled":false`)
				contains("tpm", `"version":"1.2"`)
			case "windows-partial":
				contains("diskencryption", `"encrypted":false`, `"state":"paused"`)
				contains("firewall", `"enabled":false`, `"decided_by":"windows:Public"`)
				contains("patches", `"version_id":"11 24H2"`, `"last_successful_update":"2026-11-12T00:00:00Z"`, `"end_of_life":"2027-10-12T00:00:00Z"`,
					`"auto_updates":{"enabled":false`)
				contains("tpm", `"version":"2.0"`)
			default:
				t.Errorf("unexpected snapshot %s", dir)
			}
		})
	}
}
