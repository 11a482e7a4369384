package screenlock

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// dconfSettings are the GNOME keys that decide the screen lock.
type dconfSettings struct {
	idleDelay   *int  // org/gnome/desktop/session idle-delay (seconds; 0 = never)
	lockEnabled *bool // org/gnome/desktop/screensaver lock-enabled
	lockDelay   *int  // org/gnome/desktop/screensaver lock-delay (seconds after blanking)
	// idleActivation false: the screen never blanks on idle, so it never
	// locks on idle (org/gnome/desktop/screensaver idle-activation-enabled).
	idleActivation *bool
	// disableLock true: GNOME never shows the lock screen
	// (org/gnome/desktop/lockdown disable-lock-screen).
	disableLock *bool
}

// parseDconfKeyfile reads a dconf keyfile (/etc/dconf/db/*.d/*) into s,
// later files overriding earlier ones, as dconf compiles them.
func parseDconfKeyfile(b []byte, s *dconfSettings) error {
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "["):
			if !strings.HasSuffix(line, "]") {
				return fmt.Errorf("line %d: unterminated section %q", n, line)
			}
			section = strings.Trim(line, "[]/ ")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("line %d: want key=value, got %q", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch section + "/" + k {
		case "org/gnome/desktop/session/idle-delay":
			i, err := gvariantUint(v)
			if err != nil {
				return fmt.Errorf("line %d: idle-delay: %w", n, err)
			}
			s.idleDelay = &i
		case "org/gnome/desktop/screensaver/lock-delay":
			i, err := gvariantUint(v)
			if err != nil {
				return fmt.Errorf("line %d: lock-delay: %w", n, err)
			}
			s.lockDelay = &i
		case "org/gnome/desktop/screensaver/lock-enabled":
			b, err := gvariantBool(v)
			if err != nil {
				return fmt.Errorf("line %d: lock-enabled: %w", n, err)
			}
			s.lockEnabled = &b
		case "org/gnome/desktop/screensaver/idle-activation-enabled":
			b, err := gvariantBool(v)
			if err != nil {
				return fmt.Errorf("line %d: idle-activation-enabled: %w", n, err)
			}
			s.idleActivation = &b
		case "org/gnome/desktop/lockdown/disable-lock-screen":
			b, err := gvariantBool(v)
			if err != nil {
				return fmt.Errorf("line %d: disable-lock-screen: %w", n, err)
			}
			s.disableLock = &b
		}
	}
	return sc.Err()
}

// gvariantBool parses a GVariant boolean: "true" or "false" only.
func gvariantBool(v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("not a GVariant boolean: %q", v)
}

// gvariantUint parses "uint32 300" or "300".
func gvariantUint(v string) (int, error) {
	v = strings.TrimSpace(strings.TrimPrefix(v, "uint32"))
	n, err := strconv.ParseUint(v, 10, 32)
	return int(n), err
}

// lockedKeys reads a dconf locks file: one key path per line.
func lockedKeys(b []byte) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out[strings.TrimPrefix(l, "/")] = true
		}
	}
	return out
}

var sysadminctlDelay = regexp.MustCompile(`screenLock delay is (\d+) seconds`)

// parseSysadminctl reads `sysadminctl -screenLock status` (it prints to
// stderr, after a log prefix): "screenLock delay is 300 seconds",
// "screenLock is immediate" or "screenLock is off". It returns whether a
// password is asked on wake and the delay before it is.
func parseSysadminctl(out []byte) (on bool, delay int, err error) {
	s := string(out)
	switch {
	case strings.Contains(s, "screenLock is off"):
		return false, 0, nil
	case strings.Contains(s, "screenLock is immediate"):
		return true, 0, nil
	}
	if m := sysadminctlDelay.FindStringSubmatch(s); m != nil {
		d, _ := strconv.Atoi(m[1])
		return true, d, nil
	}
	return false, 0, errors.New("no screenLock status in sysadminctl output")
}
