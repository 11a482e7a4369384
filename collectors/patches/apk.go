package patches

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/evident-dev/evident/platform"
)

// apkVersionArgv lists the installed packages older than the repository
// version (apk-version(8)). "<" is an argument, not a shell redirection:
// commands never run through a shell.
var apkVersionArgv = []string{"apk", "version", "-l", "<"}

// apkUpdate is one line of `apk version -l '<'`:
//
//	busybox-1.36.1-r15                       < 1.36.1-r20
type apkUpdate struct {
	Name, Current, Candidate string
}

// parseApkVersion parses `apk version -l '<'` output. The listing starts
// with an "Installed: Available:" header; output with neither the header
// nor a single update line (empty, or only errors) is an error.
func parseApkVersion(b []byte) ([]apkUpdate, error) {
	var out []apkUpdate
	sawHeader := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Installed:" && f[1] == "Available:" {
			sawHeader = true
			continue
		}
		if len(f) != 3 || f[1] != "<" {
			continue
		}
		name, cur, ok := splitApkPackage(f[0])
		if !ok {
			continue
		}
		out = append(out, apkUpdate{Name: name, Current: cur, Candidate: f[2]})
	}
	if len(out) == 0 && !sawHeader {
		return nil, errors.New("parse apk version: no header and no update lines")
	}
	return out, nil
}

// splitApkPackage splits "name-1.2.3-r0" into name and version: Alpine
// versions are "<version>-r<release>", so the name ends at the dash before
// the second-to-last dash-separated field.
func splitApkPackage(s string) (name, version string, ok bool) {
	rel := strings.LastIndex(s, "-")
	if rel <= 0 || !strings.HasPrefix(s[rel+1:], "r") {
		return "", "", false
	}
	ver := strings.LastIndex(s[:rel], "-")
	if ver <= 0 {
		return "", "", false
	}
	return s[:ver], s[ver+1:], true
}

// apk fills p from apk (Alpine). It returns ErrCommandNotFound when apk is
// not installed.
//
// apk has no security metadata: every pending update counts as a pending
// security update, and PendingSecurity lists them all (bounded).
func (r *reader) apk(ctx context.Context, p *Payload) error {
	res, err := r.run(ctx, apkExcerpt, apkVersionArgv...)
	if err != nil {
		return err
	}
	p.Manager = "apk"
	p.Index = r.indexAge("apk")
	if res.ExitCode != 0 {
		return fmt.Errorf("apk version exited %d", res.ExitCode)
	}
	ups, err := parseApkVersion(res.Stdout)
	if err != nil {
		return err
	}
	p.PendingUpdates = len(ups)
	p.PendingSecurityUpdates, p.PendingSecurity = apkSecurityPackages(ups)
	return nil
}

// apkNote heads the excerpt of the apk source, so an auditor sees why the
// security count equals the total.
const apkNote = "[evident] apk has no security metadata: every pending update counts as a security update\n"

func apkExcerpt(res platform.Result) []byte {
	return append([]byte(apkNote), res.Stdout...)
}

func apkSecurityPackages(ups []apkUpdate) (int, []Package) {
	var list []Package
	for _, u := range ups {
		if len(list) == maxListed {
			break
		}
		list = append(list, Package{Name: u.Name, Version: u.Candidate})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return len(ups), list
}
