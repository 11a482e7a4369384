package patches

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/evident-dev/evident/collectors"
)

// kernelReboot compares the running kernel (/proc/sys/kernel/osrelease)
// with the newest installed one (the /lib/modules/<release> directories
// that hold a modules.dep, which depmod writes when a kernel is installed:
// directories left behind by a removed kernel's stray modules do not
// count). A newer installed kernel means a reboot is pending; it only sets
// the reason when the package manager gave none.
func (r *reader) kernelReboot(p *Payload) {
	b, err := r.file("/proc/sys/kernel/osrelease", 4096, true)
	if err != nil {
		return
	}
	p.KernelRunning = strings.TrimSpace(string(b))
	dirs, err := r.host.Glob("/lib/modules/*/modules.dep")
	if err != nil || len(dirs) == 0 {
		return
	}
	var installed []string
	for _, d := range dirs {
		installed = append(installed, path.Base(path.Dir(d)))
	}
	newest := newestKernel(installed)
	p.KernelInstalled = newest
	r.sources = append(r.sources, collectors.Source{Kind: "file", Ref: "/lib/modules/*/modules.dep", Excerpt: strings.Join(installed, "\n")})
	if p.KernelRunning == "" || compareVersions(newest, p.KernelRunning) <= 0 {
		return
	}
	p.RebootRequired = true
	if p.RebootReason == "" {
		p.RebootReason = fmt.Sprintf("kernel %s installed, %s running", newest, p.KernelRunning)
	}
}

// newestKernel returns the highest release of vs by compareVersions.
func newestKernel(vs []string) string {
	best := ""
	for _, v := range vs {
		if best == "" || compareVersions(v, best) > 0 {
			best = v
		}
	}
	return best
}

// compareVersions compares kernel releases such as "6.1.0-27-amd64" or
// "5.14.0-427.13.1.el9_4.x86_64": split on '.', '-' and '+', parts that are
// both numbers compare numerically, others as strings, and a release with
// more parts is newer when all shared parts are equal. It returns -1, 0 or
// +1.
func compareVersions(a, b string) int {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' })
	}
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.ParseUint(pa[i], 10, 64)
		nb, eb := strconv.ParseUint(pb[i], 10, 64)
		switch {
		case ea == nil && eb == nil:
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
		case pa[i] != pb[i]:
			// A number sorts after a word ("6.1.0-27" after "6.1.0-rc7").
			if ea == nil {
				return 1
			}
			if eb == nil {
				return -1
			}
			return strings.Compare(pa[i], pb[i])
		}
	}
	switch {
	case len(pa) < len(pb):
		return -1
	case len(pa) > len(pb):
		return 1
	}
	return 0
}
