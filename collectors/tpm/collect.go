package tpm

import (
	"context"
	"path"
	"sort"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// versionFromMajor maps /sys/class/tpm/tpmN/tpm_version_major (kernel 5.x
// and later) to a version.
func versionFromMajor(s string) string {
	switch strings.TrimSpace(s) {
	case "2":
		return "2.0"
	case "1":
		return "1.2"
	}
	return ""
}

// parseCaps reads the TPM 1.2 `caps` attribute ("Manufacturer: 0x49465800",
// "TCG version: 1.2").
func parseCaps(b []byte) (manufacturer, version string) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Manufacturer":
			manufacturer = strings.TrimSpace(v)
		case "TCG version":
			version = strings.TrimSpace(v)
		}
	}
	return manufacturer, version
}

// collectLinux lists /sys/class/tpm. No device means no TPM: Present is
// false and the result is ok. It has no build tag so it is tested on
// every OS.
func collectLinux(_ context.Context, host platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{}
	paths, err := host.Glob("/sys/class/tpm/tpm[0-9]*")
	if err != nil {
		res.Payload = p
		return res, err
	}
	if len(paths) == 0 {
		res.Sources = append(res.Sources, collectors.Source{Kind: "file", Ref: "/sys/class/tpm", Excerpt: "no tpm device"})
	}
	sort.Strings(paths)
	small := func(p string) (string, bool) {
		b, err := host.ReadFile(p, 4096)
		if err != nil {
			return "", false
		}
		res.Sources = append(res.Sources, collectors.FileSource(p, b, nil))
		return strings.TrimSpace(string(b)), true
	}
	for _, dir := range paths {
		d := Device{Name: path.Base(dir)}
		if v, ok := small(dir + "/tpm_version_major"); ok {
			d.Version = versionFromMajor(v)
		}
		if caps, ok := small(dir + "/caps"); ok { // TPM 1.2 only
			m, v := parseCaps([]byte(caps))
			d.Manufacturer = m
			if d.Version == "" {
				d.Version = v
			}
		}
		if d.Version == "" {
			// Older kernels: only TPM 2.0 devices get a resource manager.
			rm := "/sys/class/tpmrm/tpmrm" + strings.TrimPrefix(d.Name, "tpm")
			if _, err := host.ReadDir(rm); err == nil {
				d.Version = "2.0"
				res.Sources = append(res.Sources, collectors.Source{Kind: "file", Ref: rm, Excerpt: "present"})
			}
		}
		if desc, ok := small(dir + "/device/description"); ok {
			d.Description = desc
		}
		p.Devices = append(p.Devices, d)
	}
	p.Present = len(p.Devices) > 0
	for _, d := range p.Devices {
		if d.Version == "2.0" || p.Version == "" {
			p.Version = d.Version
		}
	}
	res.Payload = p
	return res, nil
}
