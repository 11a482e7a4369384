package osinfo

import (
	"context"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestRealSerial(t *testing.T) {
	for in, want := range map[string]string{
		"PF2ABC12": "PF2ABC12", "  C02DEMO00001 \n": "C02DEMO00001", "VMware-56 4d 1b 2c": "VMware-56 4d 1b 2c",
		"10000000a1b2c3d4\x00":   "10000000a1b2c3d4",
		"To Be Filled By O.E.M.": "", "To be filled by O.E.M.": "", "Default string": "", "System Serial Number": "",
		"Not Specified": "", "None": "", "0": "", "00000000": "", "XXXXXXXXXX": "", "..........": "", "0123456789": "",
		"": "", " ": "", "\x00": "",
		// What the server would refuse: a device must still enroll.
		"SN123\xff": "", "SN\x1b[2J": "", strings.Repeat("A1", 129): "",
	} {
		if got := realSerial(in); got != want {
			t.Errorf("realSerial(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLinuxModel(t *testing.T) {
	for _, tc := range []struct{ vendor, name, version, want string }{
		{"LENOVO", "20XW0055US", "ThinkPad X1 Carbon Gen 9", "ThinkPad X1 Carbon Gen 9 (20XW0055US)"},
		{"LENOVO", "20XW0055US", "", "20XW0055US"},
		{"Dell Inc.", "Latitude 7440", "", "Latitude 7440"},
		{"System manufacturer", "System Product Name", "System Version", ""},
		{"To Be Filled By O.E.M.", "To Be Filled By O.E.M.", "To Be Filled By O.E.M.", ""},
	} {
		if got := linuxModel(tc.vendor, tc.name, tc.version); got != tc.want {
			t.Errorf("linuxModel(%q, %q, %q) = %q, want %q", tc.vendor, tc.name, tc.version, got, tc.want)
		}
	}
}

func TestConsoleUserParsers(t *testing.T) {
	if uid := parseSeatActiveUID(platformtest.ReadFixture(t, "laptop", "run/systemd/seats/seat0")); uid != "1000" {
		t.Errorf("seat0 active uid %q, want 1000", uid)
	}
	if uid := parseSeatActiveUID([]byte("# no session\nSESSIONS=\n")); uid != "" {
		t.Errorf("seat without an active session: uid %q", uid)
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/bash\nada:x:1000:1000:Ada,,,:/home/ada:/bin/bash\n")
	if n := parsePasswdName(passwd, "1000"); n != "ada" {
		t.Errorf("uid 1000 is %q", n)
	}
	if n := parsePasswdName(passwd, "100"); n != "" {
		t.Errorf("uid 100 is %q, want nobody (no prefix match)", n)
	}
	for in, want := range map[string]string{"ada": "ada", "root\n": "", "_mbsetupuser": "", `CORP\ada`: `CORP\ada`, `CORP\`: "", "": ""} {
		if got := consoleUser(in); got != want {
			t.Errorf("consoleUser(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCollectLinuxHardware(t *testing.T) {
	for _, tc := range []struct {
		root                         string
		commands                     map[string]platform.Result
		serial, vendor, model, owner string
	}{
		{root: "testdata/laptop", commands: map[string]platform.Result{"getent passwd 1000": {Stdout: []byte("ada:x:1000:1000:Ada Lovelace,,,:/home/ada:/bin/bash\n")}},
			serial: "PF2ABC12", vendor: "LENOVO", model: "ThinkPad X1 Carbon Gen 9 (20XW0055US)", owner: "ada"},
		// No getent answer: the uid is all that is known.
		{root: "testdata/laptop", serial: "PF2ABC12", vendor: "LENOVO", model: "ThinkPad X1 Carbon Gen 9 (20XW0055US)", owner: "uid 1000"},
		// SMBIOS placeholders: the device tree names the board.
		{root: "testdata/board", serial: "10000000a1b2c3d4", model: "Raspberry Pi 4 Model B Rev 1.4"},
		// The recording VM: no SMBIOS, no device tree, no seat.
		{root: "testdata/vm"},
	} {
		h := platformtest.Replay{Live: &platform.Live{Root: tc.root}, OS: "linux", Commands: tc.commands}
		res, err := New().Collect(context.Background(), h)
		if err != nil {
			t.Fatalf("%s: %v", tc.root, err)
		}
		p := res.Payload.(Payload)
		if p.SerialNumber != tc.serial || p.HardwareVendor != tc.vendor || p.HardwareModel != tc.model || p.ConsoleUser != tc.owner {
			t.Errorf("%s: serial %q vendor %q model %q user %q; want %q %q %q %q", tc.root, p.SerialNumber, p.HardwareVendor, p.HardwareModel, p.ConsoleUser,
				tc.serial, tc.vendor, tc.model, tc.owner)
		}
		if tc.root == "testdata/laptop" && p.Virtualization != "" {
			t.Errorf("laptop: virtualization %q", p.Virtualization)
		}
	}
}
