package screenlock

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// New returns the screen lock collector.
//
// Parser v2 (GNOME): enforced needs lock-delay locked too;
// disable-lock-screen and idle-activation-enabled are read; a non-GNOME
// session makes it unknown.
func New() collectors.Collector {
	return collectors.ByOS{Signal: Name, Version: ParserVersion, Linux: collectLinux, Darwin: collectDarwin, Windows: collectWindows}
}

func ptr[T any](v T) *T { return &v }

// GNOME's built-in defaults, which apply when no system policy sets a key.
const (
	gnomeIdleDelay = 300
	gnomeLockDelay = 0
)

func collectLinux(_ context.Context, h platform.Host) (collectors.Result, error) {
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
	var other []string
	for _, s := range sessions {
		base := path.Base(s)
		if !strings.HasPrefix(base, "gnome") && !strings.HasPrefix(base, "ubuntu") {
			other = append(other, s)
		}
	}
	if len(other) > 0 {
		// A user may log in to a session whose lock GNOME's policy does
		// not govern: it cannot be judged from GNOME's settings.
		p.Mechanism = ""
		p.Detail = "graphical sessions " + strings.Join(other, ", ") + " are not GNOME: screen lock policy is read for GNOME only"
		res.Payload = p
		return res, nil
	}

	// System policy: the keyfiles of the system databases the user profile
	// names (gdm's database applies to the login screen only), in name
	// order as dconf compiles them; locks make keys unchangeable.
	var dbs []string
	if b, err := h.ReadFile("/etc/dconf/profile/user", 64<<10); err == nil {
		res.Sources = append(res.Sources, collectors.FileSource("/etc/dconf/profile/user", b, nil))
		for _, l := range strings.Split(string(b), "\n") {
			if db, ok := strings.CutPrefix(strings.TrimSpace(l), "system-db:"); ok && db != "" && !strings.ContainsAny(db, "/*?[") {
				dbs = append(dbs, db)
			}
		}
	}
	var s dconfSettings
	locked := map[string]bool{}
	for _, db := range dbs {
		files, _ := h.Glob("/etc/dconf/db/" + db + ".d/*")
		sort.Strings(files)
		for _, f := range files {
			b, err := h.ReadFile(f, 64<<10)
			if err != nil {
				continue // a directory (locks/) or unreadable
			}
			perr := parseDconfKeyfile(b, &s)
			res.Sources = append(res.Sources, collectors.FileSource(f, b, perr))
		}
		lockFiles, _ := h.Glob("/etc/dconf/db/" + db + ".d/locks/*")
		for _, f := range lockFiles {
			if b, err := h.ReadFile(f, 64<<10); err == nil {
				for k := range lockedKeys(b) {
					locked[k] = true
				}
				res.Sources = append(res.Sources, collectors.FileSource(f, b, nil))
			}
		}
	}
	if s.idleDelay == nil && s.lockEnabled == nil && s.lockDelay == nil && s.idleActivation == nil && s.disableLock == nil {
		// GNOME's defaults would lock after 300 s, but nothing stops a user
		// from turning that off: no evidence of a control.
		p.Detail = "no dconf system policy sets the screen lock: GNOME's defaults (lock after 300 s) apply until a user changes them"
		res.Payload = p
		return res, nil
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
	idleOn := s.idleActivation == nil || *s.idleActivation
	noLock := s.disableLock != nil && *s.disableLock
	if s.idleActivation != nil {
		from = append(from, "idle-activation-enabled")
	}
	if s.disableLock != nil {
		from = append(from, "disable-lock-screen")
	}
	p.Enabled = ptr(lockOn && idle > 0 && idleOn && !noLock)
	p.PasswordOnWake = ptr(lockOn && !noLock)
	if idle > 0 {
		p.IdleSeconds = ptr(idle + lockDelay)
	}
	// lock-delay counts too: unlocked, a user can set it to hours and
	// the screen blanks without locking.
	var unlocked []string
	for _, k := range []string{"org/gnome/desktop/session/idle-delay", "org/gnome/desktop/screensaver/lock-enabled", "org/gnome/desktop/screensaver/lock-delay"} {
		if !locked[k] {
			unlocked = append(unlocked, path.Base(k))
		}
	}
	p.Enforced = len(unlocked) == 0
	if p.Enforced {
		p.Detail = "dconf system policy sets and locks " + strings.Join(from, ", ")
	} else {
		p.Detail = "dconf system policy sets " + strings.Join(from, ", ") + " but does not lock " + strings.Join(unlocked, ", ") + ": users may change them"
	}
	switch {
	case noLock:
		p.Detail += "; disable-lock-screen is true: GNOME never locks the screen"
	case !idleOn:
		p.Detail += "; idle-activation-enabled is false: the screen never blanks on idle, so it never locks"
	}
	res.Payload = p
	return res, nil
}

const managedScreensaver = "/Library/Managed Preferences/com.apple.screensaver"

func collectDarwin(ctx context.Context, h platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{Applicable: true, Mechanism: "macos"}
	delay := -1 // seconds from screen saver to password; -1 when unknown
	out, err := h.Run(ctx, "sysadminctl", "-screenLock", "status")
	if err != nil {
		res.Sources = append(res.Sources, collectors.Source{Kind: "command", Ref: "sysadminctl -screenLock status", Error: err.Error()})
	} else {
		text := append(append([]byte{}, out.Stdout...), out.Stderr...)
		res.Sources = append(res.Sources, collectors.CommandSource(out, text))
		on, d, perr := parseSysadminctl(text)
		if perr != nil {
			res.Sources[len(res.Sources)-1].Error = perr.Error()
		} else {
			delay = d
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
			// The idle time is managed; the password delay is the user's
			// (sysadminctl), so the lock is enforced only in part.
			p.Enforced, p.IdleSeconds = true, ptr(n)
			switch {
			case p.PasswordOnWake == nil:
				// The lock itself could not be read: unknown, not off.
			case !*p.PasswordOnWake || n <= 0:
				p.Enabled = ptr(false)
			default:
				// Locked after the screen saver starts plus the delay
				// before a password is asked.
				p.Enabled, p.IdleSeconds = ptr(true), ptr(n+max(delay, 0))
			}
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

func collectWindows(_ context.Context, h platform.Host) (collectors.Result, error) {
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
	case v.Type != "DWORD":
		res.Sources = append(res.Sources, collectors.Source{Kind: "registry", Ref: ref, Error: "type " + v.Type + ", want DWORD"})
		p.Detail = "the machine inactivity limit policy has an unexpected type " + v.Type
	default:
		res.Sources = append(res.Sources, collectors.Source{Kind: "registry", Ref: ref, Excerpt: v.Type + " " + strconv.FormatUint(v.Int, 10)})
		n := int(v.Int)
		p.Enabled, p.IdleSeconds, p.Enforced = ptr(n > 0), ptr(n), true
		p.Detail = "machine inactivity limit " + strconv.Itoa(n) + " s"
	}
	res.Payload = p
	return res, nil
}
