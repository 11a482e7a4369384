package osinfo

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collectDarwin reads macOS facts through the Host, so a darwin snapshot
// replays: `sw_vers` for the release, `sysctl -n` for the hostname, kernel
// release, architecture, boot time and hypervisor, and `ioreg` for the
// hardware UUID (what gopsutil reports as the host id on macOS). It has no
// build tag so it is tested on every OS.
func collectDarwin(ctx context.Context, h platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{OS: "darwin", Platform: "macos", PlatformFamily: "darwin"}
	run := func(argv ...string) (string, bool) {
		r, err := h.Run(ctx, argv...)
		if err != nil {
			if !errors.Is(err, platform.ErrCommandNotFound) {
				res.Sources = append(res.Sources, collectors.Source{Kind: "command", Ref: strings.Join(argv, " "), Error: err.Error()})
			}
			return "", false
		}
		ex := r.Stdout
		if r.ExitCode != 0 {
			ex = r.Stderr
		}
		res.Sources = append(res.Sources, collectors.CommandSource(r, ex))
		if r.ExitCode != 0 {
			return "", false
		}
		return strings.TrimSpace(string(r.Stdout)), true
	}
	if out, ok := run("sw_vers"); ok {
		p.PlatformVersion = parseSwVersVersion(out)
	}
	p.Hostname, _ = run("sysctl", "-n", "kern.hostname")
	p.KernelVersion, _ = run("sysctl", "-n", "kern.osrelease")
	p.KernelArch, _ = run("sysctl", "-n", "hw.machine")
	if out, ok := run("sysctl", "-n", "kern.boottime"); ok {
		p.BootTime, _ = parseDarwinBootTime(out)
	}
	if out, ok := run("sysctl", "-n", "kern.hv_vmm_present"); ok && out == "1" {
		p.Virtualization = "vm guest"
	}
	if out, ok := run("ioreg", "-rd1", "-c", "IOPlatformExpertDevice"); ok {
		p.MachineID = parseIOPlatformUUID(out)
		p.SerialNumber, p.HardwareModel, p.HardwareVendor = parseIOPlatformIdentity(out)
	}
	// The owner of /dev/console is the user at the screen (root at the
	// login window).
	if out, ok := run("stat", "-f", "%Su", "/dev/console"); ok {
		p.ConsoleUser = consoleUser(out)
	}
	res.Payload = p
	if p.Hostname == "" && p.PlatformVersion == "" {
		return res, fmt.Errorf("neither sw_vers nor sysctl kern.hostname could be read")
	}
	return res, nil
}

// parseSwVersVersion returns the ProductVersion of `sw_vers`.
func parseSwVersVersion(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ProductVersion:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var bootTimeRE = regexp.MustCompile(`\{\s*sec\s*=\s*(\d+)\s*,`)

// parseDarwinBootTime parses `sysctl -n kern.boottime`:
// "{ sec = 1763543410, usec = 181427 } Wed Nov 19 09:10:10 2025".
func parseDarwinBootTime(s string) (time.Time, bool) {
	m := bootTimeRE.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0).UTC(), true
}

var platformUUIDRE = regexp.MustCompile(`"IOPlatformUUID"\s*=\s*"([0-9A-Fa-f-]+)"`)

// parseIOPlatformUUID finds `"IOPlatformUUID" = "…"` in ioreg output.
func parseIOPlatformUUID(s string) string {
	if m := platformUUIDRE.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}
