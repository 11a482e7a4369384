package diskencryption

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func windowsHost(t *testing.T, rows map[string]string) platformtest.Replay {
	return platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: rows}
}

func TestParseEncryptableVolumes(t *testing.T) {
	type want struct {
		mount, role, state, method string
		encrypted, exempt          bool
		detail                     string // substring
	}
	tests := []struct {
		file string
		want []want
	}{
		{"encrypted.json", []want{
			{mount: "C:", role: "system", state: "encrypted", method: "BitLocker XTS-AES 256", encrypted: true},
			{mount: "D:", role: "data", state: "encrypted", method: "BitLocker XTS-AES 128", encrypted: true},
			{mount: "E:", role: "data", state: "off", exempt: true},
		}},
		{"decrypted.json", []want{{mount: "C:", role: "system", state: "off", detail: "ConversionStatus 0 (FullyDecrypted)"}}},
		{"paused.json", []want{{mount: "C:", role: "system", state: "paused", method: "BitLocker XTS-AES 256", detail: "suspended"}}},
		{"encrypting.json", []want{
			{mount: "C:", role: "system", state: "encrypting", method: "BitLocker XTS-AES 256", detail: "EncryptionInProgress"},
			{mount: "D:", role: "data", state: "encrypting", method: "BitLocker XTS-AES 256", detail: "encryption paused"},
		}},
		{"locked-nulls.json", []want{
			{mount: "C:", role: "system", state: "encrypted", method: "BitLocker AES 256", encrypted: true},
			{role: "data", method: "BitLocker method 9", detail: "may be locked"},
			{role: "data", detail: "ConversionStatus not reported, ProtectionStatus not reported"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var rows []encryptableVolume
			if err := json.Unmarshal([]byte(string(platformtest.ReadFixture(t, "windows", tt.file))), &rows); err != nil {
				t.Fatal(err)
			}
			vs := parseEncryptableVolumes(rows)
			if len(vs) != len(tt.want) {
				t.Fatalf("got %d volumes, want %d: %+v", len(vs), len(tt.want), vs)
			}
			for i, w := range tt.want {
				v := vs[i]
				mount := strings.Join(v.Mountpoints, ",")
				if mount != w.mount || v.Role != w.role || v.State != w.state || v.Method != w.method ||
					v.Encrypted != w.encrypted || v.Exempt != w.exempt || !strings.Contains(v.Detail, w.detail) {
					t.Errorf("volume %d: got %+v, want %+v", i, v, w)
				}
				if !strings.HasPrefix(v.Device, `\\?\Volume{`) {
					t.Errorf("device %q", v.Device)
				}
			}
		})
	}
}

func TestCollectWindows(t *testing.T) {
	key := bitlockerNamespace + "|" + bitlockerQuery
	res, err := New().Collect(context.Background(), windowsHost(t, map[string]string{key: string(platformtest.ReadFixture(t, "windows", "paused.json"))}))
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if len(p.Volumes) != 1 || p.Volumes[0].Encrypted || p.Volumes[0].State != "paused" {
		t.Errorf("payload %+v", p)
	}
	if len(res.Sources) != 1 || res.Sources[0].Kind != "wmi" || !strings.Contains(res.Sources[0].Excerpt, `"ProtectionStatus":0`) {
		t.Errorf("sources %+v", res.Sources)
	}

	// No rows: an empty, not failed, result (the server says "no fixed volume").
	res, err = New().Collect(context.Background(), windowsHost(t, map[string]string{key: `[]`}))
	if err != nil || len(res.Payload.(Payload).Volumes) != 0 {
		t.Errorf("no rows: %+v %v", res, err)
	}

	// Provider missing: an error, never an empty pass.
	res, err = New().Collect(context.Background(), windowsHost(t, map[string]string{}))
	if !errors.Is(err, fs.ErrNotExist) || res.Payload != nil || len(res.Sources) != 1 || res.Sources[0].Error == "" {
		t.Errorf("missing class: %+v %v", res, err)
	}

	// Garbage rows.
	if _, err := New().Collect(context.Background(), windowsHost(t, map[string]string{key: `{"DeviceID": 1`})); err == nil {
		t.Error("garbage: want error")
	}
}
