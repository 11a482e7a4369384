package patches

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// indexFiles are the files whose modification time dates each manager's
// index, as glob patterns. The newest match decides; keep is a filter
// (nil keeps all).
var indexFiles = map[string]struct {
	patterns []string
	keep     func(base string) bool
	what     string
}{
	// apt: only the InRelease/Release files of security suites
	// (bookworm-security, jammy-security, debian-security/…): a refresh in
	// which the security archive failed still rewrites the other lists,
	// and update-success-stamp is touched whenever apt-get update exits 0,
	// which it does when some sources failed.
	"apt": {patterns: []string{"/var/lib/apt/lists/*_InRelease", "/var/lib/apt/lists/*_Release"},
		keep: func(b string) bool { return strings.Contains(strings.ToLower(b), "security") },
		what: "security suite index (…-security InRelease/Release) in /var/lib/apt/lists"},
	"dnf": {patterns: []string{"/var/cache/dnf/*/repodata/repomd.xml", "/var/cache/libdnf5/*/repodata/repomd.xml", "/var/cache/dnf/*.solv"},
		what: "repository metadata (repomd.xml, .solv) in /var/cache/dnf or /var/cache/libdnf5"},
	"yum": {patterns: []string{"/var/cache/yum/*/*/*/repomd.xml", "/var/cache/yum/*/repomd.xml"},
		what: "repository metadata (repomd.xml) in /var/cache/yum"},
	"zypper": {patterns: []string{"/var/cache/zypp/raw/*/repodata/repomd.xml"},
		what: "repository metadata (repomd.xml) in /var/cache/zypp/raw"},
	"apk": {patterns: []string{"/var/cache/apk/APKINDEX.*.tar.gz"},
		what: "APKINDEX in /var/cache/apk"},
}

// maxIndexFiles bounds the files stat'ed for one manager.
const maxIndexFiles = 64

// indexAge dates the package index of manager from its files'
// modification times (platform.Stat). It never guesses: without a
// matching file, or on a host that cannot stat, it says why.
func (r *reader) indexAge(manager string) *PackageIndex {
	spec, ok := indexFiles[manager]
	if !ok {
		return &PackageIndex{Error: "no package index location known for " + manager}
	}
	var (
		newest  *time.Time
		source  string
		lines   []string
		statErr error
		n       int
	)
	for _, pat := range spec.patterns {
		matches, err := r.host.Glob(pat)
		if err != nil {
			statErr = err
			continue
		}
		for _, m := range matches {
			if spec.keep != nil && !spec.keep(path.Base(m)) {
				continue
			}
			if n == maxIndexFiles {
				break
			}
			n++
			st, err := platform.Stat(r.host, m)
			if err != nil {
				statErr = err
				lines = append(lines, m+": "+err.Error())
				continue
			}
			t := st.ModTime.UTC()
			lines = append(lines, t.Format(time.RFC3339)+" "+m)
			if newest == nil || t.After(*newest) {
				newest, source = &t, m
			}
		}
	}
	if manager == "apt" {
		// Recorded for the auditor; it does not decide (see indexFiles).
		const stamp = "/var/lib/apt/periodic/update-success-stamp"
		if st, err := platform.Stat(r.host, stamp); err == nil {
			lines = append(lines, st.ModTime.UTC().Format(time.RFC3339)+" "+stamp+" (not deciding)")
		}
	}
	src := collectors.Source{Kind: "file", Ref: "modification times: " + strings.Join(spec.patterns, " "),
		Excerpt: collectors.Excerpt([]byte(strings.Join(lines, "\n")))}
	switch {
	case newest != nil:
		r.sources = append(r.sources, src)
		return &PackageIndex{Refreshed: newest, Source: source}
	case errors.Is(statErr, errors.ErrUnsupported):
		src.Error = "file modification times are not available from this host"
	case statErr != nil:
		src.Error = statErr.Error()
	default:
		src.Error = "no " + spec.what + " found"
	}
	r.sources = append(r.sources, src)
	return &PackageIndex{Error: src.Error}
}

// darwinIndex dates macOS's software catalog from the
// com.apple.SoftwareUpdate preferences: LastSuccessfulDate is the last
// successful catalog check (the `softwareupdate --list` just run updates it
// when it reached Apple), LastFullSuccessfulDate the last full scan.
func darwinIndex(m map[string]string) *PackageIndex {
	for _, k := range []string{"LastSuccessfulDate", "LastFullSuccessfulDate"} {
		if t := parseSoftwareUpdateDate(m[k]); t != nil {
			return &PackageIndex{Refreshed: t, Source: softwareUpdatePrefs + " " + k}
		}
	}
	return &PackageIndex{Error: fmt.Sprintf("%s has no LastSuccessfulDate", softwareUpdatePrefs)}
}
