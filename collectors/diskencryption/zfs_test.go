package diskencryption

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

var zfsGetKey = strings.Join(zfsGetArgv, " ")

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseZFSGet(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]zfsProps
		wantErr bool
	}{
		{name: "fixture", in: string(readTestdata(t, "zfs/get-mixed.txt")), want: map[string]zfsProps{
			"rpool":                      {"aes-256-gcm", "available", "rpool"},
			"rpool/ROOT":                 {"aes-256-gcm", "available", "rpool"},
			"rpool/ROOT/ubuntu":          {"aes-256-gcm", "available", "rpool"},
			"rpool/ROOT/ubuntu@autosnap": {"aes-256-gcm", "available", "rpool"},
			"tank":                       {"off", "-", "-"},
			"tank/data":                  {"off", "-", "-"},
			"tank/secret":                {"aes-256-gcm", "unavailable", "tank/secret"},
		}},
		{name: "empty", in: "", want: map[string]zfsProps{}},
		{name: "blank lines and CRLF", in: "\n a\tencryption\ton\r\n\n", want: map[string]zfsProps{" a": {Encryption: "on"}}},
		{name: "other property ignored", in: "p\tcompression\tlz4\np\tencryption\toff\n", want: map[string]zfsProps{"p": {Encryption: "off"}}},
		{name: "space in name", in: "tank/my data\tencryption\toff\n", want: map[string]zfsProps{"tank/my data": {Encryption: "off"}}},
		{name: "garbage", in: "cannot open 'x': dataset does not exist\n", wantErr: true},
		{name: "human output", in: "NAME  PROPERTY    VALUE        SOURCE\nrpool  encryption  aes-256-gcm  -\n", wantErr: true},
		{name: "missing column", in: "rpool\tencryption\n", wantErr: true},
		{name: "extra column (source)", in: "rpool\tencryption\taes-256-gcm\t-\n", wantErr: true},
		{name: "empty value", in: "rpool\tencryption\t\n", wantErr: true},
		{name: "empty name", in: "\tencryption\toff\n", wantErr: true},
		{name: "garbage after good lines", in: "rpool\tencryption\toff\nzfs: out of memory\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseZFSGet([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if got != nil {
					t.Errorf("result with error: %v", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseZFSGet(f *testing.F) {
	f.Add(readTestdata(f, "zfs/get-mixed.txt"))
	f.Add(readTestdata(f, "zfs/get-plain-root.txt"))
	f.Add([]byte("a\tencryption\n\t\t\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseZFSGet(b)
		if err != nil && got != nil {
			t.Errorf("datasets returned with error")
		}
		for name := range got {
			if name == "" {
				t.Errorf("empty dataset name")
			}
		}
	})
}

func zfsHost(t *testing.T, cmds map[string]platform.Result) platformtest.Replay {
	t.Helper()
	return platformtest.Replay{Live: &platform.Live{Root: "testdata/zfs-root"}, OS: "linux", Commands: cmds}
}

const bootReason = "boot partition: bootloader and kernel only, unencrypted by design in standard LUKS installs"

func TestCollectZFS(t *testing.T) {
	boot := []Volume{
		{Device: "/dev/nvme0n1p2", Mountpoints: []string{"/boot"}, FSType: "ext4", Role: "data", Chain: []string{"nvme0n1p2"}, Exempt: true, ExemptReason: bootReason},
		{Device: "/dev/nvme0n1p1", Mountpoints: []string{"/boot/efi"}, FSType: "vfat", Role: "data", Chain: []string{"nvme0n1p1"}, Exempt: true, ExemptReason: bootReason},
	}
	zvol := func(ds, mp, role string, enc bool, method, state, detail string) Volume {
		return Volume{Device: ds, Mountpoints: []string{mp}, FSType: "zfs", Role: role, Encrypted: enc, Method: method, Chain: []string{"zfs:" + ds}, State: state, Detail: detail}
	}
	vols := func(root, data, secret Volume) []Volume {
		return []Volume{root, boot[0], boot[1], data, secret}
	}
	missing := "ZFS encryption state unknown: zfs command not available: " + platform.ErrCommandNotFound.Error()
	tests := []struct {
		name      string
		zfs       *platform.Result // nil: zfs not installed
		lsblk     bool
		want      []Volume
		srcErr    bool   // the zfs get Source carries an error
		srcExcerp string // substring of its excerpt
	}{
		{name: "encrypted root, unencrypted and locked datasets", zfs: &platform.Result{Stdout: readTestdata(t, "zfs/get-mixed.txt")}, lsblk: true,
			want: vols(
				zvol("rpool/ROOT/ubuntu", "/", "system", true, "ZFS aes-256-gcm", "encrypted", "key inherited from encryption root rpool"),
				zvol("tank/data", "/srv/data", "data", false, "", "off", "ZFS native encryption is off for this dataset"),
				zvol("tank/secret", "/srv/secret", "data", false, "ZFS aes-256-gcm", "locked", "ZFS encryption key is not loaded (keystatus unavailable); encryption root tank/secret"),
			),
			srcExcerp: "rpool/ROOT/ubuntu\tkeystatus\tavailable\n"},
		{name: "unencrypted root", zfs: &platform.Result{Stdout: readTestdata(t, "zfs/get-plain-root.txt")},
			want: vols(
				zvol("rpool/ROOT/ubuntu", "/", "system", false, "", "off", "ZFS native encryption is off for this dataset"),
				zvol("tank/data", "/srv/data", "data", false, "", "off", "ZFS native encryption is off for this dataset"),
				zvol("tank/secret", "/srv/secret", "data", true, "ZFS aes-256-gcm", "encrypted", ""),
			)},
		{name: "zfs command missing", zfs: nil, lsblk: true, srcErr: true,
			want: vols(
				zvol("rpool/ROOT/ubuntu", "/", "system", false, "", "", missing),
				zvol("tank/data", "/srv/data", "data", false, "", "", missing),
				zvol("tank/secret", "/srv/secret", "data", false, "", "", missing),
			)},
		{name: "zfs get fails", zfs: &platform.Result{ExitCode: 1, Stderr: []byte("The ZFS modules are not loaded.\n")}, srcErr: true,
			srcExcerp: "modules are not loaded",
			want: vols(
				zvol("rpool/ROOT/ubuntu", "/", "system", false, "", "", "ZFS encryption state unknown: zfs get exited with status 1"),
				zvol("tank/data", "/srv/data", "data", false, "", "", "ZFS encryption state unknown: zfs get exited with status 1"),
				zvol("tank/secret", "/srv/secret", "data", false, "", "", "ZFS encryption state unknown: zfs get exited with status 1"),
			)},
		{name: "zfs get garbage", zfs: &platform.Result{Stdout: []byte("internal error: out of memory\n")}, srcErr: true,
			srcExcerp: "out of memory",
			want: vols(
				zvol("rpool/ROOT/ubuntu", "/", "system", false, "", "", "ZFS encryption state unknown: parse zfs get: line 1: want name, property and value separated by tabs"),
				zvol("tank/data", "/srv/data", "data", false, "", "", "ZFS encryption state unknown: parse zfs get: line 1: want name, property and value separated by tabs"),
				zvol("tank/secret", "/srv/secret", "data", false, "", "", "ZFS encryption state unknown: parse zfs get: line 1: want name, property and value separated by tabs"),
			)},
		{name: "dataset not listed", zfs: &platform.Result{Stdout: []byte("rpool/ROOT/ubuntu\tencryption\taes-256-gcm\nrpool/ROOT/ubuntu\tkeystatus\tavailable\nrpool/ROOT/ubuntu\tencryptionroot\trpool/ROOT/ubuntu\n")},
			want: vols(
				zvol("rpool/ROOT/ubuntu", "/", "system", true, "ZFS aes-256-gcm", "encrypted", ""),
				zvol("tank/data", "/srv/data", "data", false, "", "", "ZFS encryption state unknown: dataset not listed by zfs get"),
				zvol("tank/secret", "/srv/secret", "data", false, "", "", "ZFS encryption state unknown: dataset not listed by zfs get"),
			)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds := map[string]platform.Result{}
			if tt.zfs != nil {
				cmds[zfsGetKey] = *tt.zfs
			}
			if tt.lsblk {
				// lists nvme0n1p3 as an unmounted zfs_member: it must not
				// be reported next to its datasets.
				cmds["lsblk"] = platform.Result{Stdout: readTestdata(t, "zfs/lsblk.json")}
			}
			res, err := New().Collect(context.Background(), zfsHost(t, cmds))
			if err != nil {
				t.Fatal(err)
			}
			p := res.Payload.(Payload)
			if !reflect.DeepEqual(p.Volumes, tt.want) {
				got, _ := json.MarshalIndent(p.Volumes, "", "  ")
				t.Errorf("volumes:\n%s", got)
			}
			var src *collectors.Source
			for i := range res.Sources {
				if res.Sources[i].Ref == zfsGetKey {
					if src != nil {
						t.Errorf("zfs get recorded twice")
					}
					src = &res.Sources[i]
				}
			}
			if src == nil {
				t.Fatalf("no zfs get source in %+v", res.Sources)
			}
			if (src.Error != "") != tt.srcErr {
				t.Errorf("source error = %q, want error %v", src.Error, tt.srcErr)
			}
			if !strings.Contains(src.Excerpt, tt.srcExcerp) {
				t.Errorf("excerpt %q does not contain %q", src.Excerpt, tt.srcExcerp)
			}
			if strings.Contains(src.Excerpt, "rpool/ROOT\t") {
				t.Errorf("excerpt keeps an unmounted dataset: %q", src.Excerpt)
			}
			for _, s := range res.Sources {
				if s.Ref == "/proc/self/mountinfo" && !strings.Contains(s.Excerpt, "- zfs tank/data") {
					t.Errorf("mountinfo excerpt lacks zfs mounts: %q", s.Excerpt)
				}
			}
		})
	}
}

func TestCollectNoZFSDoesNotRunZFS(t *testing.T) {
	h := tree(t, "vm", "vm/lsblk.json")
	h.Commands[zfsGetKey] = platform.Result{Stdout: []byte("garbage")}
	res, err := collectLinux(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Sources {
		if strings.HasPrefix(s.Ref, "zfs ") {
			t.Errorf("zfs run on a host without zfs mounts: %+v", s)
		}
	}
}

func TestParseFscryptStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []fscryptFS
		wantErr bool
	}{
		{name: "real, none set up", in: string(readTestdata(t, "fscrypt/status-none.txt")), want: []fscryptFS{
			{Mountpoint: "/", Device: "/dev/vda", FSType: "ext4", Encryption: "not enabled"},
		}},
		{name: "real, set up on a loop device", in: string(readTestdata(t, "fscrypt/status-setup-loop.txt")), want: []fscryptFS{
			{Mountpoint: "/", Device: "/dev/vda", FSType: "ext4", Encryption: "not enabled", Setup: true},
			{Mountpoint: "/mnt/evt-fscrypt", Device: "/dev/loop0", FSType: "ext4", Encryption: "supported", Setup: true},
		}},
		{name: "short row skipped", in: "MOUNTPOINT  DEVICE  FILESYSTEM  ENCRYPTION  FSCRYPT\n/  /dev/sda2  ext4  supported  Yes\n/x  /dev/sdb\n",
			want: []fscryptFS{{Mountpoint: "/", Device: "/dev/sda2", FSType: "ext4", Encryption: "supported", Setup: true}}},
		{name: "no table", in: "filesystems supporting encryption: 0\n", wantErr: true},
		{name: "garbage", in: "fscrypt: permission denied", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFscryptStatus([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCollectFscrypt(t *testing.T) {
	loop := func(detail string) []Volume {
		return []Volume{
			{Device: "/dev/vda", Mountpoints: []string{"/"}, FSType: "ext4", Role: "system", Chain: []string{"vda"}},
			{Device: "/dev/loop0", Mountpoints: []string{"/mnt/evt-fscrypt"}, FSType: "ext4", Role: "data", Chain: []string{"loop0 (file /tmp/evt-fscrypt.img)"}, Detail: detail},
		}
	}
	tests := []struct {
		name    string
		fscrypt *platform.Result
		want    []Volume
	}{
		{name: "fscrypt set up on the loop filesystem", fscrypt: &platform.Result{Stdout: readTestdata(t, "fscrypt-loop/fscrypt-status.txt")}, want: loop(fscryptDetail)},
		{name: "fscrypt not installed", want: loop("")},
		{name: "fscrypt garbage", fscrypt: &platform.Result{Stdout: []byte("garbage")}, want: loop("")},
		{name: "fscrypt fails", fscrypt: &platform.Result{ExitCode: 1, Stderr: []byte("fscrypt status: permission denied")}, want: loop("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tree(t, "fscrypt-loop", "fscrypt-loop/lsblk.json")
			if tt.fscrypt != nil {
				h.Commands["fscrypt status"] = *tt.fscrypt
			}
			p := collect(t, h)
			// zram0 (swap-less, no filesystem) is not a volume; keep the two
			// filesystems.
			if !reflect.DeepEqual(p.Volumes, tt.want) {
				got, _ := json.MarshalIndent(p.Volumes, "", "  ")
				t.Errorf("volumes:\n%s", got)
			}
		})
	}
}

func FuzzParseFscryptStatus(f *testing.F) {
	f.Add(readTestdata(f, "fscrypt/status-setup-loop.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := parseFscryptStatus(b)
		if err != nil && rows != nil {
			t.Errorf("rows returned with error")
		}
	})
}
