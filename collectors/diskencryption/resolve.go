package diskencryption

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// lsblkArgv is the lsblk command the collector runs. MOUNTPOINT and
// MOUNTPOINTS are both asked for: old util-linux knows only the first.
var lsblkArgv = []string{"lsblk", "-J", "-b", "-o", "NAME,KNAME,PATH,TYPE,FSTYPE,MOUNTPOINT,MOUNTPOINTS,RM,RO,SIZE,PKNAME"}

// maxDepth bounds the walk down /sys/class/block/*/slaves.
const maxDepth = 12

// linuxReader walks /proc and /sys of one host. It lives in a file without
// build tags so its tests (over recorded trees) run on every OS.
type linuxReader struct {
	ctx     context.Context
	host    platform.Host
	sources []collectors.Source
	byDev   map[string]string    // "maj:min" -> kernel name
	byDM    map[string]string    // dm name -> kernel name
	lsblk   map[string]*blockDev // kernel name -> lsblk row
}

// collectLinux reads every fixed volume of a Linux host: the block devices
// behind mounted filesystems (/proc/self/mountinfo), active swap
// (/proc/swaps) and unmounted filesystems lsblk sees, each resolved through
// /sys/class/block/*/slaves down to the disks, looking for a dm-crypt layer.
//
// ZFS datasets are reported by dataset name with their native encryption
// (one `zfs get` for all of them); ext4/f2fs volumes with fscrypt set up get
// a Detail saying so, without counting as encrypted (see zfs.go).
//
// Non-block mounts (proc, tmpfs, cgroup, network filesystems, ...) are not
// volumes and are left out, except the root filesystem, which is always
// reported (exempt when it is, say, a container's overlay).
func collectLinux(ctx context.Context, host platform.Host) (collectors.Result, error) {
	r := &linuxReader{ctx: ctx, host: host, byDev: map[string]string{}, byDM: map[string]string{}, lsblk: map[string]*blockDev{}}
	p := Payload{Volumes: []Volume{}}

	mi, err := host.ReadFile("/proc/self/mountinfo", 0)
	if err != nil {
		r.sources = append(r.sources, collectors.FileSource("/proc/self/mountinfo", nil, err))
		return collectors.Result{Payload: p, Sources: r.sources}, fmt.Errorf("read mountinfo: %w", err)
	}
	mounts, err := parseMountinfo(mi)
	if err != nil {
		r.sources = append(r.sources, collectors.FileSource("/proc/self/mountinfo", mi, err))
		return collectors.Result{Payload: p, Sources: r.sources}, err
	}
	r.sources = append(r.sources, collectors.FileSource("/proc/self/mountinfo", blockMountLines(mi), nil))

	sw, swErr := host.ReadFile("/proc/swaps", 0)
	if swErr != nil && !platform.IsNotExist(swErr) {
		r.sources = append(r.sources, collectors.FileSource("/proc/swaps", nil, swErr))
	} else if swErr == nil {
		r.sources = append(r.sources, collectors.FileSource("/proc/swaps", sw, nil))
	}

	devs := r.runLsblk(ctx)
	r.index()

	vols := map[string]*Volume{}
	var order []string
	get := func(key, kname string) *Volume {
		if v, ok := vols[key]; ok {
			return v
		}
		v := &Volume{Device: r.devPath(kname), Role: "data"}
		vols[key] = v
		order = append(order, key)
		return v
	}

	zfsSets := map[string]bool{}
	for _, m := range mounts {
		if m.FSType == "zfs" {
			// A ZFS dataset has no block device of its own (anonymous
			// 0:N): it is reported by dataset name, once however many
			// times it is mounted.
			ds, ok := zfsDataset(m.Source)
			if !ok {
				continue
			}
			v := get("zfs:"+ds, "")
			v.Device, v.FSType = ds, "zfs"
			v.Chain = []string{"zfs:" + ds}
			v.Mountpoints = appendUnique(v.Mountpoints, m.Mountpoint)
			if m.Mountpoint == "/" {
				v.Role = "system"
			}
			zfsSets[ds] = true
			continue
		}
		kname := r.lookup(m.MajMin, m.Source)
		if kname == "" {
			if m.Mountpoint == "/" {
				v := get("mount:/", "")
				v.Device, v.FSType, v.Role = m.Source, m.FSType, "system"
				v.Mountpoints = append(v.Mountpoints, "/")
				v.Exempt = true
				if pseudoFS[m.FSType] {
					v.ExemptReason = fmt.Sprintf("root is a %s pseudo/virtual filesystem (container or live image); its backing volume is not visible here", m.FSType)
				} else {
					v.ExemptReason = fmt.Sprintf("root (%s from %s) is not a local block device", m.FSType, m.Source)
				}
			}
			continue
		}
		v := get(kname, kname)
		v.Mountpoints = appendUnique(v.Mountpoints, m.Mountpoint)
		if v.FSType == "" {
			v.FSType = m.FSType
		}
		if m.Mountpoint == "/" {
			v.Role = "system"
		}
	}

	for _, s := range parseSwaps(sw) {
		if s.Type == "file" {
			mp, kname := r.containingMount(mounts, s.Filename)
			if kname == "" {
				continue
			}
			v := get("swapfile:"+s.Filename, kname)
			v.Device, v.FSType, v.Role = s.Filename, "swap", "swap"
			v.Chain = []string{"swap file on " + mp}
			r.evaluate(v, kname, "")
			continue
		}
		kname := r.lookupPath(s.Filename)
		if kname == "" {
			continue
		}
		v := get(kname, kname)
		v.FSType = "swap"
		if v.Role != "system" {
			v.Role = "swap"
		}
	}

	// Unmounted filesystems (a data partition nobody mounted, a LUKS
	// container not opened) still hold data at rest: lsblk lists them.
	for _, d := range devs {
		if d.HasChildren || (d.FSType == "" && len(d.Mountpoints) == 0) {
			continue
		}
		if d.FSType == "zfs_member" && len(zfsSets) > 0 {
			continue // its pool is imported: its datasets are reported above
		}
		if _, ok := vols[d.KName]; ok {
			continue
		}
		v := get(d.KName, d.KName)
		v.FSType = d.FSType
		v.Mountpoints = d.Mountpoints
		if d.FSType == "swap" {
			v.Role = "swap"
		}
	}

	if len(zfsSets) > 0 {
		props, why := r.runZFSGet(ctx, zfsSets)
		for _, key := range order {
			if ds, ok := strings.CutPrefix(key, "zfs:"); ok {
				v := vols[key]
				p, found := props[ds]
				applyZFS(v, p, found, why)
				if v.Role != "system" && isBootOnly(v.Mountpoints) {
					v.Exempt, v.ExemptReason = true, "boot partition: bootloader and kernel only, unencrypted by design in standard LUKS installs"
				}
			}
		}
	}

	for _, key := range order {
		v := vols[key]
		if strings.HasPrefix(key, "zfs:") || strings.HasPrefix(key, "mount:") || strings.HasPrefix(key, "swapfile:") {
			continue // decided above
		}
		r.evaluate(v, key, v.FSType)
	}
	for _, key := range order {
		p.Volumes = append(p.Volumes, *vols[key])
	}
	sort.SliceStable(p.Volumes, func(i, j int) bool { return roleRank(p.Volumes[i].Role) < roleRank(p.Volumes[j].Role) })
	r.applyFscrypt(ctx, p.Volumes)
	return collectors.Result{Payload: p, Sources: r.sources}, nil
}

// isBootOnly reports whether every mountpoint is a boot or EFI system
// partition mountpoint.
func isBootOnly(mps []string) bool {
	for _, m := range mps {
		switch m {
		case "/boot", "/boot/efi", "/efi":
		default:
			return false
		}
	}
	return len(mps) > 0
}

func roleRank(role string) int {
	switch role {
	case "system":
		return 0
	case "data":
		return 1
	}
	return 2
}

// evaluate fills Encrypted, Method, Chain and the exemption of v, whose
// top device is kname.
func (r *linuxReader) evaluate(v *Volume, kname, fstype string) {
	w := r.walk(kname, 0)
	v.Encrypted, v.Method = w.encrypted, w.method
	v.Chain = append(v.Chain, w.chain...)
	if w.detail != "" {
		v.Detail, v.State = w.detail, "off"
	}
	if fstype == "crypto_LUKS" && !v.Encrypted && w.detail == "" {
		// A LUKS container that is not opened: its header is on disk, its
		// contents are ciphertext, unless the header says the data
		// cipher is null or a reencryption left plaintext segments.
		v.Encrypted, v.Method = true, "LUKS"
		if h, ok := r.luksDump(r.ctx, r.devPath(kname)); ok {
			v.Encrypted, v.State, v.Detail = judgeHeader(h)
		}
	}
	row := r.lsblk[kname]
	switch {
	case len(w.leaves) > 0 && allTrue(w.leaves, r.removable):
		v.Exempt, v.ExemptReason = true, "removable media"
	case pseudoFS[fstype]:
		v.Exempt, v.ExemptReason = true, fmt.Sprintf("%s is a pseudo/read-only image filesystem", fstype)
	case r.readOnly(kname) || (row != nil && row.RO):
		v.Exempt, v.ExemptReason = true, "read-only device"
	case w.ram:
		v.Exempt, v.ExemptReason = true, "RAM-backed device (zram/ram): nothing at rest"
	case v.Role != "system" && isBootOnly(v.Mountpoints):
		v.Exempt, v.ExemptReason = true, "boot partition: bootloader and kernel only, unencrypted by design in standard LUKS installs"
	}
}

type walkResult struct {
	detail    string // why a crypt layer does not count (null cipher)
	encrypted bool
	method    string
	chain     []string
	leaves    []string // physical devices at the bottom of the stack
	ram       bool
}

// walk resolves kname down its slaves. A device is encrypted when it is a
// dm-crypt device, or when every device below it is encrypted (LVM on
// LUKS, RAID over LUKS members).
func (r *linuxReader) walk(kname string, depth int) walkResult {
	if depth > maxDepth {
		return walkResult{chain: []string{kname + " (stack too deep)"}}
	}
	base := "/sys/class/block/" + kname
	label := kname
	method := ""
	if strings.HasPrefix(kname, "dm-") {
		uuid := r.readSmall(base+"/dm/uuid", true)
		method = cryptMethod(uuid)
		label = fmt.Sprintf("%s (%s)", kname, dmKind(uuid))
	} else if strings.HasPrefix(kname, "loop") {
		if bf := r.readSmall(base+"/loop/backing_file", true); bf != "" {
			label = fmt.Sprintf("%s (file %s)", kname, bf)
		}
	}
	res := walkResult{chain: []string{label}, method: method, encrypted: method != ""}
	if res.encrypted {
		// The dm uuid says cryptsetup made the device, not that it
		// encrypts: the active table's cipher may be cipher_null.
		if name := r.readSmall(base+"/dm/name", false); name != "" && r.ctx != nil {
			if c, ok := r.cryptStatus(r.ctx, name); ok && nullCipher(c) {
				res.encrypted = false
				res.detail = fmt.Sprintf("dm-crypt %s (%s) uses cipher %s: no encryption", name, method, c)
			}
		}
		// Below a crypt layer everything is ciphertext; still record the
		// stack for the auditor, and the leaves for removability.
		sub := r.walkSlaves(kname, depth)
		res.chain = append(res.chain, sub.chain...)
		res.leaves = sub.leaves
		return res
	}
	sub := r.walkSlaves(kname, depth)
	if sub.n == 0 {
		res.leaves = []string{kname}
		res.ram = strings.HasPrefix(kname, "zram") || strings.HasPrefix(kname, "ram")
		return res
	}
	res.chain = append(res.chain, sub.chain...)
	res.leaves, res.encrypted, res.method, res.ram, res.detail = sub.leaves, sub.allEncrypted, sub.method, sub.allRAM, sub.detail
	return res
}

type slavesResult struct {
	n                    int
	chain, leaves        []string
	allEncrypted, allRAM bool
	method, detail       string
}

func (r *linuxReader) walkSlaves(kname string, depth int) slavesResult {
	ents, err := r.host.ReadDir("/sys/class/block/" + kname + "/slaves")
	out := slavesResult{allEncrypted: true, allRAM: true}
	if err != nil {
		return out
	}
	for _, e := range ents {
		s := r.walk(e.Name(), depth+1)
		out.n++
		out.chain = append(out.chain, s.chain...)
		out.leaves = append(out.leaves, s.leaves...)
		out.allEncrypted = out.allEncrypted && s.encrypted
		out.allRAM = out.allRAM && s.ram
		if out.method == "" {
			out.method = s.method
		}
		if out.detail == "" {
			out.detail = s.detail
		}
	}
	if !out.allEncrypted {
		out.method = ""
	}
	return out
}

// removable reports /sys/block/<disk>/removable (partitions ask their disk).
func (r *linuxReader) removable(kname string) bool {
	if row := r.lsblk[kname]; row != nil && row.RM {
		return true
	}
	disk := kname
	if m, _ := r.host.Glob("/sys/block/*/" + kname); len(m) == 1 {
		disk = path.Base(path.Dir(m[0]))
	}
	return r.readSmall("/sys/block/"+disk+"/removable", false) == "1"
}

func (r *linuxReader) readOnly(kname string) bool {
	return r.readSmall("/sys/class/block/"+kname+"/ro", false) == "1"
}

// readSmall reads a one-line sysfs attribute, recording it as evidence
// when record is set.
func (r *linuxReader) readSmall(p string, record bool) string {
	b, err := r.host.ReadFile(p, 4096)
	if record && (err == nil || !platform.IsNotExist(err)) {
		r.sources = append(r.sources, collectors.FileSource(p, b, err))
	}
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// index maps "maj:min" and dm names to kernel names from /sys/class/block.
func (r *linuxReader) index() {
	paths, _ := r.host.Glob("/sys/class/block/*")
	for _, p := range paths {
		k := path.Base(p)
		if dev := r.readSmall(p+"/dev", false); dev != "" {
			r.byDev[dev] = k
		}
		if strings.HasPrefix(k, "dm-") {
			if n := r.readSmall(p+"/dm/name", false); n != "" {
				r.byDM[n] = k
			}
		}
	}
}

// lookup finds the kernel name of a mount's device: by major:minor first,
// then by its source path (btrfs reports an anonymous 0:N device).
func (r *linuxReader) lookup(majMin, source string) string {
	if k, ok := r.byDev[majMin]; ok {
		return k
	}
	return r.lookupPath(source)
}

func (r *linuxReader) lookupPath(p string) string {
	if !strings.HasPrefix(p, "/dev/") {
		return ""
	}
	if name, ok := strings.CutPrefix(p, "/dev/mapper/"); ok {
		return r.byDM[name]
	}
	k := path.Base(p)
	for _, known := range r.byDev {
		if known == k {
			return k
		}
	}
	for _, d := range r.lsblk {
		if d.Path == p {
			return d.KName
		}
	}
	return ""
}

// containingMount returns the mount point holding file p and its device.
func (r *linuxReader) containingMount(mounts []mount, p string) (string, string) {
	best, kname := "", ""
	for _, m := range mounts {
		mp := m.Mountpoint
		if !(p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) || len(mp) < len(best) {
			continue
		}
		best, kname = mp, r.lookup(m.MajMin, m.Source)
	}
	return best, kname
}

func (r *linuxReader) devPath(kname string) string {
	if kname == "" {
		return ""
	}
	if d := r.lsblk[kname]; d != nil && d.Path != "" {
		return d.Path
	}
	for name, k := range r.byDM {
		if k == kname {
			return "/dev/mapper/" + name
		}
	}
	return "/dev/" + kname
}

// runLsblk runs lsblk. It is a supplement (unmounted volumes, removable and
// read-only flags): its absence is recorded, not fatal.
func (r *linuxReader) runLsblk(ctx context.Context) []blockDev {
	res, err := r.host.Run(ctx, lsblkArgv...)
	if err != nil {
		s := collectors.Source{Kind: "command", Ref: strings.Join(lsblkArgv, " "), Error: err.Error()}
		r.sources = append(r.sources, s)
		return nil
	}
	src := collectors.CommandSource(res, res.Stdout)
	if res.ExitCode != 0 {
		src = collectors.CommandSource(res, res.Stderr)
		r.sources = append(r.sources, src)
		return nil
	}
	devs, err := parseLsblk(res.Stdout)
	if err != nil {
		src.Error = err.Error()
	}
	r.sources = append(r.sources, src)
	for i := range devs {
		r.lsblk[devs[i].KName] = &devs[i]
	}
	return devs
}

// blockMountLines keeps the mountinfo lines of block-device mounts and of
// /, the lines that decided the result.
func blockMountLines(mi []byte) []byte {
	var b strings.Builder
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (!strings.HasPrefix(f[2], "0:") || f[4] == "/" || strings.Contains(line, " /dev/") || strings.Contains(line, " - zfs ")) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return []byte(b.String())
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func allTrue(xs []string, f func(string) bool) bool {
	for _, x := range xs {
		if !f(x) {
			return false
		}
	}
	return true
}
