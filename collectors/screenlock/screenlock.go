package screenlock

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

type collector struct{}

// New returns the screen lock collector.
func New() collectors.Collector { return collector{} }

// Name implements collectors.Collector.
func (collector) Name() string { return Name }

// ParserVersion implements collectors.Versioned.
func (collector) ParserVersion() int { return 1 }

// Collect implements collectors.Collector, by the host's OS.
func (collector) Collect(ctx context.Context, h platform.Host) (collectors.Result, error) {
	switch h.GOOS() {
	case "linux":
		return collectLinux(h)
	case "darwin":
		return collectDarwin(ctx, h)
	case "windows":
		return collectWindows(h)
	default:
		return collectors.Result{}, collectors.Unsupported(Name, h.GOOS())
	}
}

func ptr[T any](v T) *T { return &v }

// GNOME's built-in defaults, which apply when no system policy sets a key.
const (
	gnomeIdleDelay = 300
	gnomeLockDelay = 0
)

func collectLinux(h platform.Host) (collectors.Result, error) {
	var res collectors.Result
	var sessions []string
	for _, pat := range []string{"/usr/share/xsessions/*.desktop", "/usr/share/wayland-sessions/*.desktop"} {
		m, _ := h.Glob(pat)
		sessions = append(sessions, m...)
	}
	if len(sessions) == 0 {
		res.Sources = append(res.Sources, collectors.Source{Kind: "file", Ref: "/usr/share/xsessions, /usr/share/wayland-sessions",
			Excerpt: "no session files"})
		res.Payload = Payload{Applicable: false, Detail: "no graphical session is installed (a server): there is no screen to lock"}
		return res, nil
	}
	sort.Strings(sessions)
	res.Sources = append(res.Sources, collectors.Source{Kind: "file", Ref: "graphical sessions", Excerpt: strings.Join(sessions, "\n")})
	p := Payload{Applicable: true, Mechanism: "gnome-dconf"}

	// System policy: every keyfile of every dconf database, in name order
	// (dconf compiles them that way); locks make keys unchangeable.
	files, _ := h.Glob("/etc/dconf/db/*.d/*")
	sort.Strings(files)
	var s dconfSettings
	locked := map[string]bool{}
	for _, f := range files {
		b, err := h.ReadFile(f, 64<<10)
		if err != nil {
			continue // a directory (locks/) or unreadable
		}
		if err := parseDconfKeyfile(b, &s); err != nil {
			res.Sources = append(res.Sources, collectors.FileSource(f, b, err))
			continue
		}
		res.Sources = append(res.Sources, collectors.FileSource(f, b, nil))
	}
	lockFiles, _ := h.Glob("/etc/dconf/db/*.d/locks/*")
	for _, f := range lockFiles {
		if b, err := h.ReadFile(f, 64<<10); err == nil {
			for k := range lockedKeys(b) {
				locked[k] = true
			}
			res.Sources = append(res.Sources, collectors.FileSource(f, b, nil))
		}
	}
	idle, lockDelay, lockOn := gnomeIdleDelay, gnomeLockDelay, true
	var from []string
	if s.idleDelay != nil {
		idle = *s.idleDelay
		from = append(from, "idle-delay")
	}
	if s.lockDelay != nil {
		lockDelay = *s.lockDelay
		from = append(from, "lock-delay")
	}
	if s.lockEnabled != nil {
		lockOn = *s.lockEnabled
		from = append(from, "lock-enabled")
	}
	p.Enabled = ptr(lockOn && idle > 0)
	p.PasswordOnWake = ptr(lockOn)
	if idle > 0 {
		p.IdleSeconds = ptr(idle + lockDelay)
	}
	p.Enforced = locked["org/gnome/desktop/session/idle-delay"] && locked["org/gnome/desktop/screensaver/lock-enabled"]
	switch {
	case len(from) == 0:
		p.Detail = "no dconf system policy: GNOME defaults apply (lock after 300 s), and each user may change them"
	case !p.Enforced:
		p.Detail = "dconf system policy sets " + strings.Join(from, ", ") + " but does not lock idle-delay and lock-enabled: users may change them"
	default:
		p.Detail = "dconf system policy sets and locks " + strings.Join(from, ", ")
	}
	res.Payload = p
	return res, nil
}

const managedScreensaver = "/Library/Managed Preferences/com.apple.screensaver"

func collectDarwin(ctx context.Context, h platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{Applicable: true, Mechanism: "macos"}
	out, err := h.Run(ctx, "sysadminctl", "-screenLock", "status")
	if err != nil {
		res.Sources = append(res.Sources, collectors.Source{Kind: "command", Ref: "sysadminctl -screenLock status", Error: err.Error()})
	} else {
		text := append(append([]byte{}, out.Stdout...), out.Stderr...)
		res.Sources = append(res.Sources, collectors.CommandSource(out, text))
		on, delay, perr := parseSysadminctl(text)
		if perr != nil {
			res.Sources[len(res.Sources)-1].Error = perr.Error()
		} else {
			p.PasswordOnWake = ptr(on)
			p.Detail = "password asked " + strconv.Itoa(delay) + " s after sleep or screen saver"
			if !on {
				p.Detail = "no password is asked on wake (screenLock is off)"
			}
		}
	}
	// The idle time is per user unless an MDM profile manages it.
	idle, err := h.Run(ctx, "defaults", "read", managedScreensaver, "idleTime")
	switch {
	case err != nil:
		res.Sources = append(res.Sources, collectors.Source{Kind: "command", Ref: "defaults read " + managedScreensaver + " idleTime", Error: err.Error()})
	case idle.ExitCode != 0:
		res.Sources = append(res.Sources, collectors.CommandSource(idle, idle.Stderr))
		p.Detail += "; no managed screen saver idle time (each user sets it)"
	default:
		res.Sources = append(res.Sources, collectors.CommandSource(idle, idle.Stdout))
		if n, perr := strconv.Atoi(strings.TrimSpace(string(idle.Stdout))); perr == nil {
			p.IdleSeconds, p.Enforced = ptr(n), true
			p.Enabled = ptr(n > 0 && p.PasswordOnWake != nil && *p.PasswordOnWake)
		} else {
			res.Sources[len(res.Sources)-1].Error = "idleTime is not a number"
		}
	}
	if p.Enabled == nil && p.PasswordOnWake != nil && !*p.PasswordOnWake {
		p.Enabled = ptr(false)
	}
	res.Payload = p
	return res, nil
}

// The machine inactivity limit (Group Policy "Interactive logon: Machine
// inactivity limit"): Windows locks the session after this many seconds.
const (
	policyKey   = `SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System`
	policyValue = "InactivityTimeoutSecs"
)

func collectWindows(h platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{Applicable: true, Mechanism: "windows-policy", PasswordOnWake: ptr(true)}
	v, err := h.Registry(policyKey, policyValue)
	ref := `HKLM\` + policyKey + `\` + policyValue
	switch {
	case platform.IsNotExist(err):
		res.Sources = append(res.Sources, collectors.Source{Kind: "registry", Ref: ref, Excerpt: "not set"})
		p.Enabled = ptr(false)
		p.Detail = "no machine inactivity limit policy (per-user screen saver settings are not enforced)"
	case err != nil:
		res.Sources = append(res.Sources, collectors.Source{Kind: "registry", Ref: ref, Error: err.Error()})
		res.Payload = p
		return res, fmt.Errorf("read %s: %w", ref, err)
	default:
		res.Sources = append(res.Sources, collectors.Source{Kind: "registry", Ref: ref, Excerpt: v.Type + " " + strconv.FormatUint(v.Int, 10)})
		n := int(v.Int)
		p.Enabled, p.IdleSeconds, p.Enforced = ptr(n > 0), ptr(n), true
		p.Detail = "machine inactivity limit " + strconv.Itoa(n) + " s"
	}
	res.Payload = p
	return res, nil
}
