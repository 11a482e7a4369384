package secureboot

import (
	"context"
	"errors"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

// The registry values are reconstructions from Microsoft's documentation
// (see testdata/windows/README.md), not captures.
func TestCollectWindows(t *testing.T) {
	key := secureBootStateKey + "|" + secureBootStateName
	tests := []struct {
		name    string
		regs    map[string]platform.RegistryValue
		want    Payload
		wantErr bool
	}{
		{name: "on", regs: map[string]platform.RegistryValue{key: {Type: "DWORD", Int: 1}},
			want: Payload{UEFI: true, Enabled: ptr(true), Detail: "UEFISecureBootEnabled = 1"}},
		{name: "off", regs: map[string]platform.RegistryValue{key: {Type: "DWORD", Int: 0}},
			want: Payload{UEFI: true, Enabled: ptr(false), Detail: "UEFISecureBootEnabled = 0"}},
		{name: "legacy BIOS", regs: map[string]platform.RegistryValue{},
			want: Payload{Detail: `HKLM\SYSTEM\CurrentControlSet\Control\SecureBoot\State\UEFISecureBootEnabled absent: legacy BIOS boot`}},
		{name: "wrong type", regs: map[string]platform.RegistryValue{key: {Type: "SZ", String: "1"}}, want: Payload{UEFI: true}, wantErr: true},
		{name: "undocumented value", regs: map[string]platform.RegistryValue{key: {Type: "DWORD", Int: 7}}, want: Payload{UEFI: true}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", RegistryValues: tt.regs}
			res, err := New().Collect(context.Background(), h)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			got := res.Payload.(Payload)
			if got.UEFI != tt.want.UEFI || !eq(got.Enabled, tt.want.Enabled) || got.Detail != tt.want.Detail {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if len(res.Sources) != 1 || res.Sources[0].Kind != "registry" {
				t.Errorf("sources %+v", res.Sources)
			}
		})
	}

	// A registry that cannot be read is an error, not a BIOS boot.
	res, err := collectWindows(context.Background(), failingRegistry{})
	if err == nil || res.Payload != nil {
		t.Errorf("failing registry: %+v %v", res, err)
	}
}

type failingRegistry struct{ platform.Host }

func (failingRegistry) Registry(string, string) (platform.RegistryValue, error) {
	return platform.RegistryValue{}, errors.New("Access is denied.")
}
