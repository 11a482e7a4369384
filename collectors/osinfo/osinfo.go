package osinfo

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/host"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collector reads OS facts through gopsutil, on every OS.
type collector struct{}

// New returns the osinfo collector.
func New() collectors.Collector { return collector{} }

// Name implements collectors.Collector.
func (collector) Name() string { return Name }

// ParserVersion implements collectors.Versioned.
func (collector) ParserVersion() int { return 1 }

// Collect implements collectors.Collector. On the live host gopsutil reads
// the machine; when the Live host has a Root, gopsutil is pointed at
// Root/proc, Root/sys and Root/etc, and the hostname and machine id come
// from the files under Root rather than from syscalls. Any other Host (a
// replayed snapshot) is read through the Host only.
func (collector) Collect(ctx context.Context, h platform.Host) (collectors.Result, error) {
	var res collectors.Result
	live, isLive := h.(*platform.Live)
	var p Payload
	var infoErr error
	if isLive {
		if live.Root != "" {
			ctx = context.WithValue(ctx, common.EnvKey, common.EnvMap{
				common.HostProcEnvKey: filepath.Join(live.Root, "proc"),
				common.HostSysEnvKey:  filepath.Join(live.Root, "sys"),
				common.HostEtcEnvKey:  filepath.Join(live.Root, "etc"),
				common.HostVarEnvKey:  filepath.Join(live.Root, "var"),
				common.HostRunEnvKey:  filepath.Join(live.Root, "run"),
				common.HostDevEnvKey:  filepath.Join(live.Root, "dev"),
			})
		}
		info, err := host.InfoWithContext(ctx)
		if info != nil {
			p = fromInfo(info)
		}
		infoErr = err
		res.Sources = append(res.Sources, collectors.Source{Kind: "api", Ref: "gopsutil host.Info", Error: errString(err)})
	}
	if !isLive || live.Root != "" {
		p.OS = h.GOOS()
		fromFiles(h, &p, &res)
	}
	if p.MachineID == "" {
		if b, err := h.ReadFile("/etc/machine-id", 256); err == nil {
			p.MachineID = strings.TrimSpace(string(b))
			res.Sources = append(res.Sources, collectors.FileSource("/etc/machine-id", b, nil))
		}
	}
	res.Payload = p
	if p.Hostname == "" && p.Platform == "" && infoErr != nil {
		return res, fmt.Errorf("host info: %w", infoErr)
	}
	return res, nil
}

func fromInfo(i *host.InfoStat) Payload {
	p := Payload{
		Hostname: i.Hostname, OS: i.OS, Platform: i.Platform, PlatformFamily: i.PlatformFamily,
		PlatformVersion: i.PlatformVersion, KernelVersion: i.KernelVersion, KernelArch: i.KernelArch,
	}
	if i.BootTime > 0 {
		p.BootTime = time.Unix(int64(i.BootTime), 0).UTC()
	}
	if i.VirtualizationSystem != "" {
		p.Virtualization = strings.TrimSpace(i.VirtualizationSystem + " " + i.VirtualizationRole)
	}
	return p
}

// fromFiles fills what a recorded tree can say better than syscalls: the
// hostname, and the OS release when gopsutil could not read one.
func fromFiles(h platform.Host, p *Payload, res *collectors.Result) {
	for _, f := range []string{"/proc/sys/kernel/hostname", "/etc/hostname"} {
		if b, err := h.ReadFile(f, 256); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			p.Hostname = strings.TrimSpace(string(b))
			res.Sources = append(res.Sources, collectors.FileSource(f, b, nil))
			break
		}
	}
	if p.Platform == "" {
		if b, err := h.ReadFile("/etc/os-release", 64<<10); err == nil {
			kv := parseOSRelease(b)
			p.Platform, p.PlatformVersion = kv["ID"], kv["VERSION_ID"]
			p.PlatformFamily = strings.Fields(kv["ID_LIKE"] + " " + kv["ID"])[0]
			res.Sources = append(res.Sources, collectors.FileSource("/etc/os-release", b, nil))
		}
	}
	// uname describes the machine running the agent, not the tree.
	p.KernelVersion, p.KernelArch = "", ""
	if b, err := h.ReadFile("/proc/sys/kernel/osrelease", 256); err == nil {
		p.KernelVersion = strings.TrimSpace(string(b))
	}
	if b, err := h.ReadFile("/proc/sys/kernel/arch", 256); err == nil {
		p.KernelArch = strings.TrimSpace(string(b))
	}
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
