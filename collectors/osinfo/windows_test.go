package osinfo

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestWindowsArch(t *testing.T) {
	for in, want := range map[string]string{"64-bit": "x86_64", "64 bits": "x86_64", "64 ビット": "x86_64", "64-Bit": "x86_64",
		"ARM 64-bit Processor": "arm64", "ARM 64 bits": "arm64", "32-bit": "i386", "": "", "unknown": ""} {
		if got := windowsArch(in); got != want {
			t.Errorf("windowsArch(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCollectWindows(t *testing.T) {
	osKey, productKey := cimv2Namespace+"|"+winOSQuery, cimv2Namespace+"|"+productQuery
	biosKey, systemKey := cimv2Namespace+"|"+biosQuery, cimv2Namespace+"|"+systemQuery
	tests := []struct {
		name    string
		rows    map[string]string
		want    Payload
		wantErr bool
		sources int // 2 unless set
	}{
		{name: "11 pro", rows: map[string]string{osKey: string(platformtest.ReadFixture(t, "windows", "os-11-pro.json")), productKey: string(platformtest.ReadFixture(t, "windows", "product.json"))},
			want: Payload{Hostname: "LAPTOP-7F3K", OS: "windows", Platform: "Microsoft Windows 11 Pro", PlatformFamily: "windows",
				PlatformVersion: "10.0.26200", KernelVersion: "10.0.26200", KernelArch: "x86_64",
				BootTime: time.Date(2026, 11, 19, 7, 42, 13, 500_000_000, time.UTC), MachineID: "4C4C4544-0037-3610-8052-B7C04F4B4E32"}},
		{name: "arm french placeholder uuid", rows: map[string]string{osKey: string(platformtest.ReadFixture(t, "windows", "os-11-arm-fr.json")), productKey: string(platformtest.ReadFixture(t, "windows", "product-placeholder.json"))},
			want: Payload{Hostname: "PC-ATELIER", OS: "windows", Platform: "Microsoft Windows 11 Professionnel", PlatformFamily: "windows",
				PlatformVersion: "10.0.26100", KernelVersion: "10.0.26100", KernelArch: "arm64", BootTime: time.Date(2026, 11, 18, 8, 0, 0, 0, time.UTC)}},
		{name: "serial number, model and console user", rows: map[string]string{osKey: string(platformtest.ReadFixture(t, "windows", "os-11-pro.json")), productKey: string(platformtest.ReadFixture(t, "windows", "product.json")),
			biosKey: string(platformtest.ReadFixture(t, "windows", "bios.json")), systemKey: string(platformtest.ReadFixture(t, "windows", "system.json"))},
			want: Payload{Hostname: "LAPTOP-7F3K", OS: "windows", Platform: "Microsoft Windows 11 Pro", PlatformFamily: "windows",
				PlatformVersion: "10.0.26200", KernelVersion: "10.0.26200", KernelArch: "x86_64",
				BootTime: time.Date(2026, 11, 19, 7, 42, 13, 500_000_000, time.UTC), MachineID: "4C4C4544-0037-3610-8052-B7C04F4B4E32",
				SerialNumber: "5CD1234XYZ", HardwareVendor: "HP", HardwareModel: "HP EliteBook 840 G8 Notebook PC", ConsoleUser: `CORP\ada.lovelace`}, sources: 4},
		{name: "placeholders, nobody at the console", rows: map[string]string{osKey: string(platformtest.ReadFixture(t, "windows", "os-11-pro.json")), productKey: string(platformtest.ReadFixture(t, "windows", "product.json")),
			biosKey: string(platformtest.ReadFixture(t, "windows", "bios-placeholder.json")), systemKey: string(platformtest.ReadFixture(t, "windows", "system-nobody.json"))},
			want: Payload{Hostname: "LAPTOP-7F3K", OS: "windows", Platform: "Microsoft Windows 11 Pro", PlatformFamily: "windows",
				PlatformVersion: "10.0.26200", KernelVersion: "10.0.26200", KernelArch: "x86_64",
				BootTime: time.Date(2026, 11, 19, 7, 42, 13, 500_000_000, time.UTC), MachineID: "4C4C4544-0037-3610-8052-B7C04F4B4E32"}, sources: 4},
		{name: "odd, no product class", rows: map[string]string{osKey: string(platformtest.ReadFixture(t, "windows", "os-10-odd.json"))},
			want: Payload{Hostname: "WS-0042", OS: "windows", Platform: "Microsoft Windows 10 Enterprise LTSC", PlatformFamily: "windows",
				PlatformVersion: "10.0.17763", KernelVersion: "10.0.17763"}},
		{name: "product garbage", rows: map[string]string{osKey: string(platformtest.ReadFixture(t, "windows", "os-11-pro.json")), productKey: `[{"UUID": 7}]`},
			want: Payload{Hostname: "LAPTOP-7F3K", OS: "windows", Platform: "Microsoft Windows 11 Pro", PlatformFamily: "windows",
				PlatformVersion: "10.0.26200", KernelVersion: "10.0.26200", KernelArch: "x86_64",
				BootTime: time.Date(2026, 11, 19, 7, 42, 13, 500_000_000, time.UTC)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: tt.rows}
			res, err := New().Collect(context.Background(), h)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if got := res.Payload.(Payload); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if n := max(tt.sources, 2); len(res.Sources) != n || res.Sources[0].Kind != "wmi" {
				t.Errorf("sources %+v", res.Sources)
			}
		})
	}
	for name, rows := range map[string]map[string]string{"class missing": {}, "no rows": {osKey: `[]`}, "garbage": {osKey: `[{"Caption": 1}]`}} {
		h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", WMIResults: rows}
		res, err := New().Collect(context.Background(), h)
		if err == nil || res.Payload != nil {
			t.Errorf("%s: want an error and no payload, got %+v %v", name, res, err)
		}
		if name == "class missing" && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("class missing: %v", err)
		}
	}
}
