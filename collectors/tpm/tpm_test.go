package tpm

import (
	"context"
	"reflect"
	"testing"

	"github.com/evident-dev/evident/platform"
)

func TestParseCaps(t *testing.T) {
	m, v := parseCaps([]byte("Manufacturer: 0x49465800\nTCG version: 1.2\nFirmware version: 3.19\n"))
	if m != "0x49465800" || v != "1.2" {
		t.Errorf("got %q %q", m, v)
	}
	if m, v := parseCaps([]byte("garbage")); m != "" || v != "" {
		t.Errorf("garbage: %q %q", m, v)
	}
}

func TestCollect(t *testing.T) {
	tests := []struct {
		tree string
		want Payload
	}{
		{tree: "tpm2", want: Payload{Present: true, Version: "2.0", Devices: []Device{{Name: "tpm0", Version: "2.0", Description: "TPM 2.0 Device"}}}},
		{tree: "tpm12", want: Payload{Present: true, Version: "1.2", Devices: []Device{{Name: "tpm0", Version: "1.2", Manufacturer: "0x49465800"}}}},
		{tree: "tpm2-old-kernel", want: Payload{Present: true, Version: "2.0", Devices: []Device{{Name: "tpm0", Version: "2.0"}}}},
		{tree: "none", want: Payload{}},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			res, err := collectLinux(context.Background(), &platform.Live{Root: "testdata/" + tt.tree})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Payload.(Payload); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if len(res.Sources) == 0 {
				t.Error("no sources")
			}
		})
	}
}
