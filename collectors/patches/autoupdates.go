package patches

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// Automatic updates are Enabled only when the host's own configuration says
// updates are installed without anyone acting AND the job that installs them
// is scheduled. Whatever cannot be read is Unknown, never Enabled: a
// configuration file that the tool ignores, or a timer that is disabled or
// stopped, must not read as "automatic updates on".

// aptPeriodicRE matches the APT::Periodic::* lines of `apt-config dump`,
// which prints the merged configuration fully qualified, one key a line.
var aptPeriodicRE = regexp.MustCompile(`(?m)^APT::Periodic::([A-Za-z-]+)\s+"([^"]*)";\s*$`)

// parseAptPeriodic returns the APT::Periodic settings of `apt-config dump`
// output; the last assignment of a key wins, as in apt.
func parseAptPeriodic(b []byte) map[string]string {
	out := map[string]string{}
	for _, m := range aptPeriodicRE.FindAllSubmatch(b, -1) {
		out[string(m[1])] = string(m[2])
	}
	return out
}

// aptDailyTimers run /usr/lib/apt/apt.systemd.daily: apt-daily refreshes
// the package lists (Update-Package-Lists), apt-daily-upgrade runs
// unattended-upgrade. Either one disabled or stopped and nothing is
// installed.
var aptDailyTimers = []string{"apt-daily.timer", "apt-daily-upgrade.timer"}

// unitStates parses `systemctl is-enabled|is-active u1 u2 ...`: one state a
// line, in the order of the units. It fails when the output does not hold
// exactly one state per unit (systemd not running, unit unknown).
func unitStates(out []byte, units []string) (map[string]string, error) {
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) != len(units) {
		return nil, fmt.Errorf("want %d unit states, got %q", len(units), strings.TrimSpace(string(out)))
	}
	m := make(map[string]string, len(units))
	for i, u := range units {
		m[u] = lines[i]
	}
	return m, nil
}

// timersScheduled says whether every unit is enabled (not static, indirect,
// masked or disabled) and active. why says what is not, or why it could not
// be read (then known is false).
func (r *reader) timersScheduled(ctx context.Context, units []string) (ok, known bool, why string) {
	for _, verb := range []string{"is-enabled", "is-active"} {
		want := map[string]string{"is-enabled": "enabled", "is-active": "active"}[verb]
		argv := append([]string{"systemctl", verb}, units...)
		res, err := r.run(ctx, nil, argv...)
		if errors.Is(err, platform.ErrCommandNotFound) {
			return false, false, "systemctl not found: whether a scheduler runs the update job is not checked"
		}
		if err != nil {
			return false, false, "systemctl " + verb + ": " + err.Error()
		}
		st, perr := unitStates(res.Stdout, units)
		if perr != nil {
			msg := strings.TrimSpace(firstLine(res.Stderr))
			if msg == "" {
				msg = perr.Error()
			}
			r.sources[len(r.sources)-1].Error = perr.Error()
			return false, false, "systemctl " + verb + " " + strings.Join(units, " ") + ": " + msg
		}
		for _, u := range units {
			if st[u] != want {
				return false, true, fmt.Sprintf("%s is %s: the update job does not run", u, st[u])
			}
		}
	}
	return true, true, strings.Join(units, ", ") + " enabled and active"
}

// aptAutoUpdates reads unattended-upgrades. apt's merged configuration
// comes from `apt-config dump` only: apt's own rules (which apt.conf.d names
// it reads, their order, apt.conf last, #clear, nested scopes) are not
// reimplemented on files.
func (r *reader) aptAutoUpdates(ctx context.Context) *AutoUpdates {
	au := &AutoUpdates{Mechanism: "unattended-upgrades"}
	// Only existence matters: a bound error still means the file exists.
	_, binErr := r.host.ReadFile("/usr/bin/unattended-upgrade", 1)
	installed := binErr == nil || !platform.IsNotExist(binErr)
	res, err := r.host.Run(ctx, "apt-config", "dump")
	if err != nil || res.ExitCode != 0 {
		if err != nil {
			r.sources = append(r.sources, collectors.Source{Kind: "command", Ref: "apt-config dump", Error: err.Error()})
		} else {
			r.sources = append(r.sources, collectors.CommandSource(res, res.Stderr))
		}
		if !installed {
			au.Detail = "unattended-upgrades is not installed"
			return au
		}
		au.Unknown = true
		au.Detail = "apt-config dump could not be run: apt's merged configuration is unknown"
		return au
	}
	r.sources = append(r.sources, collectors.CommandSource(res, bytesJoin(aptPeriodicRE.FindAll(res.Stdout, -1))))
	cfg := parseAptPeriodic(res.Stdout)
	show := func(k string) string {
		if v, ok := cfg[k]; ok {
			return fmt.Sprintf("APT::Periodic::%s %q", k, v)
		}
		return "APT::Periodic::" + k + " not set"
	}
	enable, enableSet := cfg["Enable"]
	switch {
	case !installed:
		au.Detail = show("Unattended-Upgrade") + " but unattended-upgrades is not installed"
		return au
	case enableSet && !periodicEnabled(enable):
		au.Detail = show("Enable") + ": apt's daily job does nothing"
		return au
	case !periodicEnabled(cfg["Unattended-Upgrade"]):
		au.Detail = show("Unattended-Upgrade")
		return au
	case !periodicEnabled(cfg["Update-Package-Lists"]):
		au.Detail = show("Unattended-Upgrade") + ", but " + show("Update-Package-Lists") +
			": apt's daily job never refreshes the package lists, so unattended-upgrade sees no new update"
		return au
	}
	conf := show("Unattended-Upgrade") + ", " + show("Update-Package-Lists")
	ok, known, why := r.timersScheduled(ctx, aptDailyTimers)
	au.Enabled, au.Unknown = ok, !known
	au.Detail = conf + "; " + why
	return au
}

// dnfAutoUpdates reads dnf-automatic: dnf-automatic-install.timer installs
// whatever apply_updates says; dnf-automatic.timer installs only with
// apply_updates = yes in /etc/dnf/automatic.conf.
func (r *reader) dnfAutoUpdates(ctx context.Context) *AutoUpdates {
	au := &AutoUpdates{Mechanism: "dnf-automatic"}
	conf, confErr := r.file("/etc/dnf/automatic.conf", 64<<10, true)
	applyVals := iniValues(conf, "commands", "apply_updates")
	apply := len(applyVals) > 0
	for _, v := range applyVals {
		apply = apply && truthy(v)
	}
	var notes []string
	for _, t := range []string{"dnf-automatic-install.timer", "dnf-automatic.timer"} {
		ok, known, why := r.timersScheduled(ctx, []string{t})
		switch {
		case !known:
			au.Unknown, au.Detail = true, why
			return au
		case !ok:
			notes = append(notes, why)
			continue
		case t == "dnf-automatic-install.timer":
			au.Enabled, au.Detail = true, why
		case apply:
			au.Enabled, au.Detail = true, why+", apply_updates = "+applyVals[len(applyVals)-1]
		default:
			au.Detail = why + ", but apply_updates is not yes (downloads only): " + strings.Join(applyVals, ", ")
		}
		return au
	}
	if confErr != nil && platform.IsNotExist(confErr) {
		au.Detail = "dnf-automatic not installed"
	} else {
		au.Detail = "no dnf-automatic timer enabled and active: " + strings.Join(notes, "; ")
	}
	return au
}

// iniValues returns every value of key in [section]: a key given twice with
// different values must not be read as the friendlier one.
func iniValues(b []byte, section, key string) []string {
	var out []string
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			cur = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && cur == section && strings.TrimSpace(k) == key {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}
