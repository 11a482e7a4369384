package patches

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// aptSimArgv simulates a full upgrade without taking apt's lock. dist-upgrade
// rather than upgrade: security fixes that need a new dependency (a new
// kernel ABI package) are held back by plain upgrade but are still pending.
var aptSimArgv = []string{"apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade"}

// reader accumulates the sources of one collection.
type reader struct {
	host    platform.Host
	sources []collectors.Source
}

func (r *reader) file(path string, limit int64, record bool) ([]byte, error) {
	b, err := r.host.ReadFile(path, limit)
	if record && (err == nil || !platform.IsNotExist(err)) {
		r.sources = append(r.sources, collectors.FileSource(path, b, err))
	}
	return b, err
}

// run runs argv; a missing command is returned as ErrCommandNotFound and
// any failure is recorded as a source.
func (r *reader) run(ctx context.Context, excerpt func(platform.Result) []byte, argv ...string) (platform.Result, error) {
	res, err := r.host.Run(ctx, argv...)
	if err != nil {
		if !errors.Is(err, platform.ErrCommandNotFound) {
			r.sources = append(r.sources, collectors.Source{Kind: "command", Ref: strings.Join(argv, " "), Error: err.Error()})
		}
		return res, err
	}
	ex := res.Stdout
	if excerpt != nil {
		ex = excerpt(res)
	}
	if res.ExitCode != 0 && len(ex) == 0 {
		ex = res.Stderr
	}
	r.sources = append(r.sources, collectors.CommandSource(res, ex))
	return res, nil
}

// collectLinux reads the patch level through apt, dnf (or yum), zypper or
// apk, then compares the running kernel with the installed ones. now dates
// the age of pending advisories. It has no build tag so it is tested on
// every OS.
func collectLinux(ctx context.Context, host platform.Host, now time.Time) (collectors.Result, error) {
	r := &reader{host: host}
	var p Payload
	osr, err := r.file("/etc/os-release", 64<<10, true)
	if platform.IsNotExist(err) {
		osr, err = r.file("/usr/lib/os-release", 64<<10, true)
	}
	if err == nil {
		p.OS = parseOSRelease(osr)
	}

	err = r.apt(ctx, &p)
	if errors.Is(err, platform.ErrCommandNotFound) {
		err = r.dnf(ctx, &p, now)
	}
	if errors.Is(err, platform.ErrCommandNotFound) {
		err = r.zypper(ctx, &p, now)
	}
	if errors.Is(err, platform.ErrCommandNotFound) {
		err = r.apk(ctx, &p)
	}
	if errors.Is(err, platform.ErrCommandNotFound) {
		err = fmt.Errorf("no supported package manager (apt-get, dnf, yum, zypper, apk) found: %w", collectors.ErrNotApplicable)
	}
	r.kernelReboot(&p)
	return collectors.Result{Payload: p, Sources: r.sources}, err
}

// apt fills p from apt. It returns ErrCommandNotFound when apt-get is not
// installed.
func (r *reader) apt(ctx context.Context, p *Payload) error {
	res, err := r.run(ctx, instLines, aptSimArgv...)
	if err != nil {
		return err
	}
	p.Manager = "apt"
	p.Index = r.indexAge("apt")
	var firstErr error
	if res.ExitCode != 0 {
		firstErr = fmt.Errorf("apt-get simulation exited %d", res.ExitCode)
	} else if ups, err := parseAptSimulation(res.Stdout); err != nil {
		firstErr = err
	} else {
		p.PendingUpdates = len(ups)
		p.PendingSecurityUpdates, p.PendingSecurity = securityPackages(ups)
	}

	if b, err := r.file("/var/log/apt/history.log", 16<<20, false); err == nil {
		p.LastSuccessfulUpdate = parseAptHistory(b, time.UTC)
		r.sources = append(r.sources, collectors.FileSource("/var/log/apt/history.log", lastEndDate(b), nil))
	}

	r.rebootRequired(p)

	p.AutoUpdates = r.aptAutoUpdates(ctx)
	return firstErr
}

// rebootRequired reads the marker Debian's update-notifier-common and
// unattended-upgrades leave after upgrading a kernel or libc.
func (r *reader) rebootRequired(p *Payload) {
	for _, dir := range []string{"/run", "/var/run"} {
		if _, err := r.file(dir+"/reboot-required", 4096, true); err != nil {
			continue
		}
		p.RebootRequired = true
		p.RebootReason = dir + "/reboot-required"
		if pk, err := r.file(dir+"/reboot-required.pkgs", 64<<10, true); err == nil && len(strings.TrimSpace(string(pk))) > 0 {
			p.RebootReason = "packages: " + strings.Join(strings.Fields(string(pk)), ", ")
		}
		return
	}
}

// dnf fills p from dnf (or yum, whose check-update has the same
// semantics). It returns ErrCommandNotFound when neither is installed.
func (r *reader) dnf(ctx context.Context, p *Payload, now time.Time) error {
	mgr := "dnf"
	res, err := r.run(ctx, nil, mgr, "-q", "check-update")
	if errors.Is(err, platform.ErrCommandNotFound) {
		mgr = "yum"
		res, err = r.run(ctx, nil, mgr, "-q", "check-update")
	}
	if err != nil {
		return err
	}
	p.Manager = mgr
	p.Index = r.indexAge(mgr)
	var firstErr error
	switch res.ExitCode {
	case 0: // no updates
	case 100:
		p.PendingUpdates = len(parseDnfCheckUpdate(res.Stdout))
	default:
		firstErr = fmt.Errorf("%s check-update exited %d", mgr, res.ExitCode)
	}
	if sec, err := r.run(ctx, nil, mgr, "-q", "updateinfo", "list", "--security"); err == nil && sec.ExitCode == 0 {
		p.PendingSecurityUpdates, p.PendingSecurity = dnfSecurityPackages(parseDnfUpdateinfo(sec.Stdout))
		if p.PendingSecurityUpdates > 0 {
			// The advisories' dates: how long the oldest has waited.
			if info, err := r.run(ctx, issuedLines, mgr, "-q", "updateinfo", "info", "--security"); err == nil && info.ExitCode == 0 {
				p.OldestPendingSecurityDays = daysSince(parseDnfUpdateinfoDates(info.Stdout), now)
			}
		}
	} else if firstErr == nil {
		// A security list that could not be read (non-zero exit, timeout,
		// killed) must not look like "none pending".
		if err != nil {
			firstErr = fmt.Errorf("%s updateinfo: %w", mgr, err)
		} else {
			firstErr = fmt.Errorf("%s updateinfo exited %d", mgr, sec.ExitCode)
		}
	}

	if b, err := r.file("/var/log/dnf.rpm.log", 16<<20, false); err == nil {
		p.LastSuccessfulUpdate = parseDnfRPMLog(b)
		r.sources = append(r.sources, collectors.FileSource("/var/log/dnf.rpm.log", nil, nil))
	}

	// needs-restarting -r: exit 1 means a reboot is required.
	if nr, err := r.run(ctx, nil, "needs-restarting", "-r"); err == nil && nr.ExitCode == 1 {
		p.RebootRequired = true
		p.RebootReason = "needs-restarting -r: " + strings.TrimSpace(firstLine(nr.Stdout))
	}

	p.AutoUpdates = r.dnfAutoUpdates(ctx)
	return firstErr
}

// instLines keeps the Inst lines of security updates (then the others) as
// the excerpt: they decide the counts.
func instLines(res platform.Result) []byte {
	var sec, other []byte
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if !strings.HasPrefix(line, "Inst ") {
			continue
		}
		if isSecurityOrigin(line) {
			sec = append(append(sec, line...), '\n')
		} else {
			other = append(append(other, line...), '\n')
		}
	}
	return append(sec, other...)
}

// issuedLines keeps the advisory ids and dates of `dnf updateinfo info`
// as the excerpt: they decide OldestPendingSecurityDays.
func issuedLines(res platform.Result) []byte {
	var out []byte
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		k, _, ok := strings.Cut(line, ":")
		switch strings.TrimSpace(k) {
		case "Update ID", "Issued", "Updated":
			if ok {
				out = append(append(out, strings.TrimSpace(line)...), '\n')
			}
		}
	}
	return out
}

func lastEndDate(b []byte) []byte {
	i := strings.LastIndex(string(b), "End-Date:")
	if i < 0 {
		return nil
	}
	return []byte(firstLine(b[i:]))
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

func bytesJoin(lines [][]byte) []byte {
	var out []byte
	for _, l := range lines {
		out = append(append(out, l...), '\n')
	}
	return out
}
