package diskencryption

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func tree(t *testing.T, name string, lsblkFile string) platformtest.Replay {
	t.Helper()
	h := platformtest.Replay{Live: &platform.Live{Root: filepath.Join("testdata", name)}, Commands: map[string]platform.Result{}}
	if lsblkFile != "" {
		b, err := os.ReadFile(filepath.Join("testdata", lsblkFile))
		if err != nil {
			t.Fatal(err)
		}
		h.Commands["lsblk"] = platform.Result{Stdout: b}
	}
	return h
}

func TestParseLsblk(t *testing.T) {
	tests := []struct {
		file    string
		wantErr bool
		want    map[string]blockDev // kname -> selected fields
	}{
		{file: "lsblk/vm-vda.json", want: map[string]blockDev{
			"vda":   {Type: "disk", Mountpoints: []string{"/"}, Size: 274877906944, Path: "/dev/vda"},
			"zram0": {Type: "disk", Path: "/dev/zram0"},
		}},
		{file: "lsblk/loop-luks2-noudev.json", want: map[string]blockDev{
			"loop0": {Type: "loop", FSType: "crypto_LUKS", Size: 33554432, Path: "/dev/loop0"},
			"loop1": {Type: "loop", FSType: "ext4", RO: true, Mountpoints: []string{"/mnt/evt-ro"}, Size: 16777216, Path: "/dev/loop1"},
		}},
		{file: "lsblk/loops-udev-nofstype.json", want: map[string]blockDev{
			"loop0": {Type: "loop", Size: 33554432, Path: "/dev/loop0"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			devs, err := parseLsblk(b)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]blockDev{}
			for _, d := range devs {
				got[d.KName] = blockDev{Type: d.Type, FSType: d.FSType, RO: d.RO, RM: d.RM, Mountpoints: d.Mountpoints, Size: d.Size, Path: d.Path}
			}
			for k, w := range tt.want {
				if !reflect.DeepEqual(got[k], w) {
					t.Errorf("%s = %+v, want %+v", k, got[k], w)
				}
			}
		})
	}
}

func TestParseLsblkShapes(t *testing.T) {
	// Synthetic inputs (not recordings): the older util-linux shape
	// (strings for booleans and sizes, no "mountpoints"), a nested tree,
	// and failures.
	tests := []struct {
		name    string
		in      string
		want    []string // kname:type:mountpoints:rm:ro:children
		wantErr bool
	}{
		{name: "old util-linux strings", in: `{"blockdevices":[{"name":"sda","kname":"sda","type":"disk","fstype":null,"mountpoint":null,"rm":"1","ro":"0","size":"1024","children":[{"name":"sda1","kname":"sda1","type":"part","fstype":"vfat","mountpoint":"/media/x","rm":"1","ro":"0","size":"512"}]}]}`,
			want: []string{"sda:disk::true:false:true", "sda1:part:/media/x:true:false:false"}},
		{name: "nested crypt lvm", in: `{"blockdevices":[{"name":"nvme0n1p3","type":"part","fstype":"crypto_LUKS","children":[{"name":"luks-1","kname":"dm-0","type":"crypt","fstype":"LVM2_member","children":[{"name":"vg-root","kname":"dm-1","type":"lvm","fstype":"ext4","mountpoints":["/","/var/snap"]}]}]}]}`,
			want: []string{"nvme0n1p3:part::false:false:true", "dm-0:crypt::false:false:true", "dm-1:lvm:/,/var/snap:false:false:false"}},
		{name: "empty list", in: `{"blockdevices":[]}`},
		{name: "empty output", in: ``, wantErr: true},
		{name: "truncated", in: `{"blockdevices":[{"name":"sda","kname":"sda",`, wantErr: true},
		{name: "garbage", in: `lsblk: unknown column: MOUNTPOINTS`, wantErr: true},
		{name: "wrong shape", in: `{"devices":[]}`, wantErr: true},
		{name: "bad bool", in: `{"blockdevices":[{"name":"sda","rm":"maybe"}]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devs, err := parseLsblk([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			var got []string
			for _, d := range devs {
				got = append(got, strings.Join([]string{d.KName, d.Type, strings.Join(d.Mountpoints, ","),
					boolStr(d.RM), boolStr(d.RO), boolStr(d.HasChildren)}, ":"))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestParseMountinfo(t *testing.T) {
	b, err := os.ReadFile("testdata/vm/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := parseMountinfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if ms[5].Mountpoint != "/" || ms[5].MajMin != "254:0" || ms[5].FSType != "ext4" || ms[5].Source != "/dev/vda" {
		t.Errorf("root mount = %+v", ms[5])
	}
	esc, err := parseMountinfo([]byte(`36 35 98:0 /mnt1 /mnt/my\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=continue` + "\n"))
	if err != nil || esc[0].Mountpoint != "/mnt/my disk" || esc[0].FSType != "ext3" || esc[0].Root != "/mnt1" {
		t.Errorf("escaped = %+v, %v", esc, err)
	}
	for _, bad := range []string{"garbage line", "1 2 3 4 5 6 7 8", "36 35 98:0 / /x rw - ext4"} {
		if _, err := parseMountinfo([]byte(bad)); err == nil {
			t.Errorf("parseMountinfo(%q): want error", bad)
		}
	}
	if ms, err := parseMountinfo(nil); err != nil || len(ms) != 0 {
		t.Errorf("empty: %v %v", ms, err)
	}
}

func TestCryptMethod(t *testing.T) {
	for uuid, want := range map[string]string{
		"CRYPT-LUKS2-5f1ac0de4bd44c5d9a431e0c0c3d5b7e-luks-x\n": "LUKS2",
		"CRYPT-LUKS1-abc-name":       "LUKS1",
		"CRYPT-PLAIN-cryptswap":      "PLAIN",
		"CRYPT-BITLK-abc-win":        "BITLK",
		"CRYPT-TCRYPT-abc-vc":        "TCRYPT",
		"CRYPT-VERITY-abc-root":      "",
		"CRYPT-INTEGRITY-abc-x":      "",
		"LVM-Qm1bH3uD2t4cV3Yw4v0kTq": "",
		"":                           "",
		"mpath-3600508b4000156d7":    "",
	} {
		if got := cryptMethod(uuid); got != want {
			t.Errorf("cryptMethod(%q) = %q, want %q", uuid, got, want)
		}
	}
}

func collect(t *testing.T, h platform.Host) Payload {
	t.Helper()
	res, err := collectLinux(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sources) == 0 {
		t.Error("no sources recorded")
	}
	return res.Payload.(Payload)
}

func byDevice(p Payload) map[string]Volume {
	m := map[string]Volume{}
	for _, v := range p.Volumes {
		m[v.Device] = v
	}
	return m
}

func TestCollectTrees(t *testing.T) {
	tests := []struct {
		tree, lsblk string
		want        []Volume
	}{
		{tree: "vm", lsblk: "vm/lsblk.json", want: []Volume{
			{Device: "/dev/vda", Mountpoints: []string{"/"}, FSType: "ext4", Role: "system", Chain: []string{"vda"}},
		}},
		{tree: "vm", want: []Volume{ // lsblk not installed: /sys and /proc still decide
			{Device: "/dev/vda", Mountpoints: []string{"/"}, FSType: "ext4", Role: "system", Chain: []string{"vda"}},
		}},
		{tree: "loop-luks", lsblk: "loop-luks/lsblk.json", want: []Volume{
			{Device: "/dev/vda", Mountpoints: []string{"/"}, FSType: "ext4", Role: "system", Chain: []string{"vda"}},
			{Device: "/dev/loop1", Mountpoints: []string{"/mnt/evt-ro"}, FSType: "ext4", Role: "data", Chain: []string{"loop1 (file /tmp/evt-plain.img)"}, Exempt: true, ExemptReason: "read-only device"},
			{Device: "/dev/loop0", FSType: "crypto_LUKS", Role: "data", Encrypted: true, Method: "LUKS", Chain: []string{"loop0 (file /tmp/evt-luks.img)"}},
		}},
		{tree: "overlay-root", want: []Volume{
			{Device: "overlay", Mountpoints: []string{"/"}, FSType: "overlay", Role: "system", Exempt: true,
				ExemptReason: "root is a overlay pseudo/virtual filesystem (container or live image); its backing volume is not visible here"},
		}},
		{tree: "luks-lvm", want: []Volume{
			{Device: "/dev/mapper/vg0-root", Mountpoints: []string{"/"}, FSType: "ext4", Role: "system", Encrypted: true, Method: "LUKS2",
				Chain: []string{"dm-1 (LVM)", "dm-0 (CRYPT-LUKS2)", "nvme0n1p3"}},
			{Device: "/dev/nvme0n1p2", Mountpoints: []string{"/boot"}, FSType: "ext4", Role: "data", Chain: []string{"nvme0n1p2"},
				Exempt: true, ExemptReason: "boot partition: bootloader and kernel only, unencrypted by design in standard LUKS installs"},
			{Device: "/dev/nvme0n1p1", Mountpoints: []string{"/boot/efi"}, FSType: "vfat", Role: "data", Chain: []string{"nvme0n1p1"},
				Exempt: true, ExemptReason: "boot partition: bootloader and kernel only, unencrypted by design in standard LUKS installs"},
			{Device: "/dev/mapper/vg0-swap", FSType: "swap", Role: "swap", Encrypted: true, Method: "LUKS2",
				Chain: []string{"dm-2 (LVM)", "dm-0 (CRYPT-LUKS2)", "nvme0n1p3"}},
		}},
		{tree: "luks-plus-data", want: []Volume{
			{Device: "/dev/mapper/cryptroot", Mountpoints: []string{"/"}, FSType: "ext4", Role: "system", Encrypted: true, Method: "LUKS2",
				Chain: []string{"dm-0 (CRYPT-LUKS2)", "sda2"}},
			{Device: "/dev/sda1", Mountpoints: []string{"/boot/efi"}, FSType: "vfat", Role: "data", Chain: []string{"sda1"},
				Exempt: true, ExemptReason: "boot partition: bootloader and kernel only, unencrypted by design in standard LUKS installs"},
			{Device: "/dev/sdb", Mountpoints: []string{"/srv/data", "/export/data"}, FSType: "ext4", Role: "data", Chain: []string{"sdb"}},
			{Device: "/dev/sdc1", Mountpoints: []string{"/media/usb"}, FSType: "vfat", Role: "data", Chain: []string{"sdc1"},
				Exempt: true, ExemptReason: "removable media"},
			{Device: "/swapfile", FSType: "swap", Role: "swap", Encrypted: true, Method: "LUKS2",
				Chain: []string{"swap file on /", "dm-0 (CRYPT-LUKS2)", "sda2"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.tree+"/"+tt.lsblk, func(t *testing.T) {
			p := collect(t, tree(t, tt.tree, tt.lsblk))
			if !reflect.DeepEqual(p.Volumes, tt.want) {
				got, _ := json.MarshalIndent(p.Volumes, "", "  ")
				t.Errorf("volumes:\n%s", got)
			}
		})
	}
}

func TestCollectFailures(t *testing.T) {
	t.Run("no mountinfo", func(t *testing.T) {
		h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}}
		res, err := collectLinux(context.Background(), h)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want not exist", err)
		}
		if len(res.Sources) != 1 || res.Sources[0].Error == "" {
			t.Errorf("sources = %+v", res.Sources)
		}
	})
	t.Run("lsblk garbage and non-zero exit are recorded, not fatal", func(t *testing.T) {
		for _, r := range []platform.Result{
			{Stdout: []byte(`{"blockdevices":[{"name":`)},
			{ExitCode: 1, Stderr: []byte("lsblk: unknown column: MOUNTPOINTS")},
		} {
			h := tree(t, "vm", "")
			h.Commands["lsblk"] = r
			res, err := collectLinux(context.Background(), h)
			if err != nil {
				t.Fatal(err)
			}
			if p := res.Payload.(Payload); len(p.Volumes) != 1 || p.Volumes[0].Device != "/dev/vda" {
				t.Errorf("volumes = %+v", p.Volumes)
			}
		}
	})
}

func FuzzParseLsblk(f *testing.F) {
	for _, name := range []string{"lsblk/vm-vda.json", "lsblk/loop-luks2-noudev.json", "lsblk/loops-udev-nofstype.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		devs, err := parseLsblk(b)
		if err != nil && devs != nil {
			t.Errorf("devices returned with error")
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	b, err := os.ReadFile("testdata/vm/proc/self/mountinfo")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseMountinfo(b) })
}
