package osinfo

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/host"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// New returns the osinfo collector. On Linux every fact is read through the
// Host (/etc/os-release, /proc, DMI), so a recorded snapshot replays to
// exactly the live result; Windows and macOS too. Other OSes are read with
// gopsutil on the live machine until their Host-based readers land.
func New() collectors.Collector {
	return collectors.ByOS{Signal: Name, Version: ParserVersion, Linux: collectLinux, Darwin: collectDarwin, Windows: collectWindows,
		Other: collectOther}
}

// collectOther reads an OS without a Host-based reader, from the live
// machine only: a snapshot or another root of such an OS is unsupported.
func collectOther(ctx context.Context, h platform.Host) (collectors.Result, error) {
	if live, ok := h.(*platform.Live); ok && live.Root == "" {
		return collectGopsutil(ctx, h.GOOS())
	}
	return collectors.Result{}, collectors.Unsupported(Name, h.GOOS())
}

func collectGopsutil(ctx context.Context, goos string) (collectors.Result, error) {
	res := collectors.Result{Sources: []collectors.Source{{Kind: "api", Ref: "gopsutil host.Info"}}}
	i, err := host.InfoWithContext(ctx)
	if i == nil {
		return res, fmt.Errorf("host info: %w", err)
	}
	p := Payload{Hostname: i.Hostname, OS: goos, Platform: i.Platform, PlatformFamily: i.PlatformFamily,
		PlatformVersion: i.PlatformVersion, KernelVersion: i.KernelVersion, KernelArch: i.KernelArch, MachineID: i.HostID}
	if i.BootTime > 0 {
		p.BootTime = time.Unix(int64(i.BootTime), 0).UTC()
	}
	if i.VirtualizationSystem != "" {
		p.Virtualization = strings.TrimSpace(i.VirtualizationSystem + " " + i.VirtualizationRole)
	}
	res.Payload = p
	return res, nil
}

// reader reads small files through the Host and records each as a source.
type reader struct {
	h   platform.Host
	res *collectors.Result
}

func (r reader) file(path string) (string, bool) {
	b, err := r.h.ReadFile(path, 64<<10)
	if err != nil {
		return "", false
	}
	r.res.Sources = append(r.res.Sources, collectors.FileSource(path, b, nil))
	return strings.TrimSpace(string(b)), true
}

func collectLinux(ctx context.Context, h platform.Host) (collectors.Result, error) {
	var res collectors.Result
	r := reader{h, &res}
	p := Payload{OS: "linux"}
	for _, f := range []string{"/proc/sys/kernel/hostname", "/etc/hostname"} {
		if s, ok := r.file(f); ok && s != "" {
			p.Hostname = s
			break
		}
	}
	if s, ok := r.file("/etc/os-release"); ok {
		kv := parseOSRelease([]byte(s))
		p.Platform, p.PlatformVersion = kv["ID"], kv["VERSION_ID"]
		if fam := strings.Fields(kv["ID_LIKE"] + " " + kv["ID"]); len(fam) > 0 {
			p.PlatformFamily = fam[0]
		}
		// Debian's VERSION_ID is the major release; debian_version has the
		// point release.
		if p.Platform == "debian" {
			if v, ok := r.file("/etc/debian_version"); ok && strings.HasPrefix(v, p.PlatformVersion) {
				p.PlatformVersion = v
			}
		}
	}
	p.KernelVersion, _ = r.file("/proc/sys/kernel/osrelease")
	if a, ok := r.file("/proc/sys/kernel/arch"); ok {
		p.KernelArch = a
	} else if out, err := h.Run(ctx, "uname", "-m"); err == nil && out.ExitCode == 0 {
		res.Sources = append(res.Sources, collectors.CommandSource(out, out.Stdout))
		p.KernelArch = strings.TrimSpace(string(out.Stdout))
	}
	// /proc/stat is mostly live counters: keep only the line that decided.
	if b, err := h.ReadFile("/proc/stat", 1<<20); err == nil {
		var line string
		p.BootTime, line = parseBootTime(string(b))
		res.Sources = append(res.Sources, collectors.FileSource("/proc/stat", []byte(line), nil))
	}
	p.MachineID, _ = r.file("/etc/machine-id")
	linuxHardware(r, &p)
	p.Virtualization = virtualization(r, p.HardwareVendor, p.HardwareModel)
	p.ConsoleUser = linuxConsoleUser(ctx, h, r)
	res.Payload = p
	if p.Hostname == "" && p.Platform == "" {
		return res, fmt.Errorf("neither a hostname nor /etc/os-release could be read")
	}
	return res, nil
}

// parseBootTime reads the btime line of /proc/stat and returns it too.
func parseBootTime(stat string) (time.Time, string) {
	for _, line := range strings.Split(stat, "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0).UTC(), line
			}
			return time.Time{}, line
		}
	}
	return time.Time{}, ""
}

// linuxHardware reads the serial number, vendor and model from SMBIOS
// (/sys/class/dmi/id; product_serial is readable by root only, as the
// agent runs), else from the device tree (ARM boards).
func linuxHardware(r reader, p *Payload) {
	const dmi = "/sys/class/dmi/id/"
	vendor, _ := r.file(dmi + "sys_vendor")
	if !placeholderText(vendor) {
		p.HardwareVendor = vendor
	}
	if name, ok := r.file(dmi + "product_name"); ok {
		version, _ := r.file(dmi + "product_version")
		p.HardwareModel = linuxModel(vendor, name, version)
	}
	for _, f := range []string{"product_serial", "chassis_serial", "board_serial"} {
		if s, ok := r.file(dmi + f); ok {
			if p.SerialNumber = realSerial(s); p.SerialNumber != "" {
				return
			}
		}
	}
	const dt = "/sys/firmware/devicetree/base/"
	if s, ok := r.file(dt + "serial-number"); ok {
		p.SerialNumber = realSerial(s)
	}
	if p.HardwareModel == "" {
		if m, ok := r.file(dt + "model"); ok {
			p.HardwareModel = strings.Trim(m, "\x00")
		}
	}
}

// linuxConsoleUser names the user of seat0's active session (systemd-
// logind), "" on a machine without a seat (a server) or nobody logged in.
// The seat file gives a uid; `getent passwd UID` names it (one account's
// line, where /etc/passwd would list them all).
func linuxConsoleUser(ctx context.Context, h platform.Host, r reader) string {
	seat, ok := r.file("/run/systemd/seats/seat0")
	if !ok {
		return ""
	}
	uid := parseSeatActiveUID([]byte(seat))
	if uid == "" {
		return ""
	}
	out, err := h.Run(ctx, "getent", "passwd", uid)
	if err == nil && out.ExitCode == 0 {
		r.res.Sources = append(r.res.Sources, collectors.CommandSource(out, out.Stdout))
		if name := parsePasswdName(out.Stdout, uid); name != "" {
			return consoleUser(name)
		}
	}
	return "uid " + uid
}

// virtualization names a container runtime or hypervisor from marker files
// and the DMI vendor and product strings, or "" on bare metal or when
// nothing says.
func virtualization(r reader, vendor, product string) string {
	if _, ok := r.file("/.dockerenv"); ok {
		return "docker guest"
	}
	if c, ok := r.file("/run/systemd/container"); ok && c != "" {
		return c + " guest"
	}
	if _, ok := r.file("/run/.containerenv"); ok {
		return "podman guest"
	}
	for _, hv := range []struct{ marker, name string }{
		{"QEMU", "kvm"}, {"KVM", "kvm"}, {"VMware", "vmware"}, {"VirtualBox", "virtualbox"},
		{"Xen", "xen"}, {"Amazon EC2", "kvm"}, {"Google", "kvm"}, {"Microsoft Corporation", "hyperv"},
	} {
		if strings.Contains(vendor, hv.marker) || strings.Contains(product, hv.marker) {
			return hv.name + " guest"
		}
	}
	return ""
}

// parseOSRelease parses os-release(5) KEY=value lines.
func parseOSRelease(b []byte) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && !strings.HasPrefix(k, "#") {
			kv[k] = strings.Trim(v, `"'`)
		}
	}
	return kv
}
