package diskencryption

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// blockDev is one row of `lsblk -J -b -o NAME,KNAME,PATH,TYPE,FSTYPE,
// MOUNTPOINT,MOUNTPOINTS,RM,RO,SIZE,PKNAME`, flattened from the tree.
type blockDev struct {
	Name        string
	KName       string
	Path        string
	Type        string // disk, part, crypt, lvm, loop, rom, raid1, ...
	FSType      string
	Mountpoints []string
	RM, RO      bool
	Size        int64
	PKName      string
	HasChildren bool
}

// lsblkBool accepts both JSON booleans (util-linux >= 2.33) and the "0"/"1"
// strings older versions print.
type lsblkBool bool

func (b *lsblkBool) UnmarshalJSON(p []byte) error {
	switch s := strings.Trim(string(p), `"`); s {
	case "true", "1":
		*b = true
	case "false", "0", "null", "":
		*b = false
	default:
		return fmt.Errorf("lsblk: bad boolean %s", p)
	}
	return nil
}

// lsblkInt accepts a JSON number or a numeric string (older util-linux).
type lsblkInt int64

func (n *lsblkInt) UnmarshalJSON(p []byte) error {
	s := strings.Trim(string(p), `"`)
	if s == "null" || s == "" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("lsblk: bad size %s", p)
	}
	*n = lsblkInt(v)
	return nil
}

type lsblkNode struct {
	Name        string      `json:"name"`
	KName       string      `json:"kname"`
	Path        string      `json:"path"`
	Type        string      `json:"type"`
	FSType      *string     `json:"fstype"`
	Mountpoint  *string     `json:"mountpoint"`
	Mountpoints []*string   `json:"mountpoints"`
	RM          lsblkBool   `json:"rm"`
	RO          lsblkBool   `json:"ro"`
	Size        lsblkInt    `json:"size"`
	PKName      *string     `json:"pkname"`
	Children    []lsblkNode `json:"children"`
}

// parseLsblk parses lsblk JSON output into a flat list, parents before
// children. A device that appears under several parents (a RAID or LVM
// volume over many disks) is listed once.
func parseLsblk(b []byte) ([]blockDev, error) {
	var doc struct {
		BlockDevices *[]lsblkNode `json:"blockdevices"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse lsblk: %w", err)
	}
	if doc.BlockDevices == nil {
		return nil, errors.New(`parse lsblk: no "blockdevices" key`)
	}
	var out []blockDev
	seen := map[string]bool{}
	var walk func(ns []lsblkNode, depth int)
	walk = func(ns []lsblkNode, depth int) {
		if depth > 16 { // a device stack is never this deep; refuse loops
			return
		}
		for _, n := range ns {
			d := blockDev{
				Name: n.Name, KName: n.KName, Path: n.Path, Type: n.Type,
				FSType: deref(n.FSType), RM: bool(n.RM), RO: bool(n.RO),
				Size: int64(n.Size), PKName: deref(n.PKName),
				HasChildren: len(n.Children) > 0,
			}
			if d.KName == "" {
				d.KName = d.Name
			}
			if d.Path == "" && d.Name != "" {
				d.Path = "/dev/" + d.Name
			}
			// util-linux >= 2.37 prints every mountpoint in "mountpoints";
			// older versions only one in "mountpoint".
			for _, m := range n.Mountpoints {
				if m != nil && *m != "" {
					d.Mountpoints = append(d.Mountpoints, *m)
				}
			}
			if len(d.Mountpoints) == 0 && deref(n.Mountpoint) != "" {
				d.Mountpoints = []string{*n.Mountpoint}
			}
			if !seen[d.KName] {
				seen[d.KName] = true
				out = append(out, d)
			}
			walk(n.Children, depth+1)
		}
	}
	walk(*doc.BlockDevices, 0)
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	MajMin     string // "254:0"
	Root       string
	Mountpoint string
	FSType     string
	Source     string
	ReadOnly   bool // mount option ro
}

// parseMountinfo parses /proc/self/mountinfo (proc(5)). Malformed lines are
// an error: the file is written by the kernel, so garbage means a wrong file.
func parseMountinfo(b []byte) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 7 || sep < 0 || sep+2 >= len(f) || !strings.Contains(f[2], ":") {
			return nil, fmt.Errorf("parse mountinfo: line %d: malformed", n)
		}
		m := mount{
			MajMin:     f[2],
			Root:       unescapeOctal(f[3]),
			Mountpoint: unescapeOctal(f[4]),
			FSType:     f[sep+1],
			Source:     unescapeOctal(f[sep+2]),
		}
		for _, o := range strings.Split(f[5], ",") {
			if o == "ro" {
				m.ReadOnly = true
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse mountinfo: %w", err)
	}
	return out, nil
}

// unescapeOctal undoes the kernel's \040-style escaping of spaces, tabs,
// newlines and backslashes in mountinfo and /proc/swaps.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// swap is one line of /proc/swaps.
type swap struct {
	Filename string
	Type     string // "partition" or "file"
}

// parseSwaps parses /proc/swaps. The header line is skipped.
func parseSwaps(b []byte) []swap {
	var out []swap
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 && len(f) > 0 && f[0] == "Filename" || len(f) < 2 {
			continue
		}
		out = append(out, swap{Filename: unescapeOctal(f[0]), Type: f[1]})
	}
	return out
}

// cryptMethods maps dm-crypt uuid prefixes (set by cryptsetup) to a Method.
// CRYPT-VERITY and CRYPT-INTEGRITY are also cryptsetup targets, but they
// protect integrity, not confidentiality, so they are not listed.
var cryptMethods = []struct{ prefix, method string }{
	{"CRYPT-LUKS1-", "LUKS1"},
	{"CRYPT-LUKS2-", "LUKS2"},
	{"CRYPT-PLAIN-", "PLAIN"},
	{"CRYPT-BITLK-", "BITLK"},
	{"CRYPT-TCRYPT-", "TCRYPT"},
}

// cryptMethod returns the encryption method named by a device-mapper uuid,
// or "" when the dm device does not encrypt.
func cryptMethod(dmUUID string) string {
	u := strings.TrimSpace(dmUUID)
	for _, c := range cryptMethods {
		if strings.HasPrefix(u, c.prefix) || u == strings.TrimSuffix(c.prefix, "-") {
			return c.method
		}
	}
	return ""
}

// dmKind is the short label of a device-mapper uuid for Volume.Chain:
// "CRYPT-LUKS2", "LVM", "CRYPT-VERITY", "mpath", ...
func dmKind(dmUUID string) string {
	u := strings.TrimSpace(dmUUID)
	if u == "" {
		return "dm"
	}
	parts := strings.SplitN(u, "-", 3)
	if parts[0] == "CRYPT" && len(parts) > 1 {
		return "CRYPT-" + parts[1]
	}
	if strings.HasPrefix(parts[0], "part") { // kpartx: part1-mpath-...
		return "partition"
	}
	return parts[0]
}

// pseudoFS are filesystems that hold no data at rest on a local disk.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "tmpfs": true, "devtmpfs": true, "devpts": true,
	"overlay": true, "squashfs": true, "cgroup": true, "cgroup2": true,
	"securityfs": true, "debugfs": true, "tracefs": true, "configfs": true,
	"pstore": true, "bpf": true, "mqueue": true, "hugetlbfs": true,
	"efivarfs": true, "binfmt_misc": true, "autofs": true, "fusectl": true,
	"ramfs": true, "rpc_pipefs": true, "nsfs": true, "fuse.lxcfs": true,
	"fuse.gvfsd-fuse": true, "fuse.portal": true, "selinuxfs": true,
	"aufs": true, "iso9660": true, "erofs": true, "nfsd": true,
}
