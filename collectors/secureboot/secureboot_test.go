package secureboot

import (
	"context"
	"testing"

	"github.com/evident-dev/evident/platform"
)

func TestParseEFIVar(t *testing.T) {
	tests := []struct {
		in      []byte
		want    bool
		wantErr bool
	}{
		{in: []byte{6, 0, 0, 0, 1}, want: true},
		{in: []byte{6, 0, 0, 0, 0}},
		{in: []byte{6, 0, 0, 0}, wantErr: true},
		{in: nil, wantErr: true},
		{in: []byte{6, 0, 0, 0, 1, 0}, wantErr: true},
		// Parser v1 read any non-zero value as enabled.
		{in: []byte{6, 0, 0, 0, 2}, wantErr: true},
		{in: []byte{6, 0, 0, 0, 0xff}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseEFIVar(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parseEFIVar(% x) = %v, %v", tt.in, got, err)
		}
	}
}

func ptr(b bool) *bool { return &b }

func TestCollect(t *testing.T) {
	tests := []struct {
		tree           string
		uefi           bool
		enabled, setup *bool
		shim           *bool
		wantErr        bool
	}{
		// mokutil --disable-validation: firmware enforces, shim does not.
		{tree: "shim-disabled", uefi: true, enabled: ptr(true), setup: ptr(false), shim: ptr(false)},
		{tree: "shim-enabled", uefi: true, enabled: ptr(true), setup: ptr(false), shim: ptr(true)},
		{tree: "enabled", uefi: true, enabled: ptr(true), setup: ptr(false), shim: ptr(true)},
		{tree: "disabled", uefi: true, enabled: ptr(false), setup: ptr(false), shim: ptr(true)},
		{tree: "setupmode", uefi: true, enabled: ptr(true), setup: ptr(true), shim: ptr(true)},
		{tree: "no-efivars", uefi: true, shim: ptr(true)},
		{tree: "truncated", uefi: true, shim: ptr(true), wantErr: true},
		{tree: "vm-bios"},
		{tree: "does-not-exist"},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			res, err := collectLinux(context.Background(), &platform.Live{Root: "testdata/" + tt.tree})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			p := res.Payload.(Payload)
			if p.UEFI != tt.uefi || !eq(p.Enabled, tt.enabled) || !eq(p.SetupMode, tt.setup) || !eq(p.ShimValidation, tt.shim) {
				t.Errorf("payload = %+v", p)
			}
			if len(res.Sources) == 0 {
				t.Error("no sources")
			}
		})
	}
}

func eq(a, b *bool) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
