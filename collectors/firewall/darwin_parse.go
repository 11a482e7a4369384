package firewall

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var alfStateRE = regexp.MustCompile(`\(State = (\d+)\)`)

// parseALFGlobalState parses `socketfilterfw --getglobalstate`, e.g.
// "Firewall is enabled. (State = 1)". The number decides: 0 off, 1 on,
// 2 on and blocking all incoming connections; a sentence saying
// "disabled" next to state 1 or 2 is an error, not a pass.
func parseALFGlobalState(b []byte) (int, error) {
	m := alfStateRE.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("socketfilterfw --getglobalstate: no (State = N) in %.80q", strings.TrimSpace(string(b)))
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil || n > 2 {
		return 0, fmt.Errorf("socketfilterfw --getglobalstate: unknown state %s", m[1])
	}
	// A sentence that contradicts its number is not trusted either way.
	if sentence := strings.ToLower(string(b[:alfStateRE.FindIndex(b)[0]])); n > 0 && strings.Contains(sentence, "disabled") {
		return 0, fmt.Errorf("socketfilterfw --getglobalstate: %q says disabled with state %d", strings.TrimSpace(string(b)), n)
	}
	return n, nil
}

// parseALFOnOff parses the answer of `socketfilterfw --getblockall` and
// `--getstealthmode`, whose wording changed across releases: "Block all
// ENABLED!" / "Block all DISABLED!", "Firewall has block all state set to
// enabled.", "Stealth mode enabled" / "Stealth mode disabled", "Firewall
// stealth mode is on" / "... is off".
func parseALFOnOff(b []byte) (bool, error) {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	switch {
	case s == "":
		return false, errors.New("socketfilterfw: empty output")
	case strings.Contains(s, "disabled") || strings.HasSuffix(strings.TrimRight(s, ".!"), " off"):
		return false, nil
	case strings.Contains(s, "enabled") || strings.HasSuffix(strings.TrimRight(s, ".!"), " on"):
		return true, nil
	}
	return false, fmt.Errorf("socketfilterfw: unrecognised output %.80q", s)
}

// parsePfctlInfo returns the Status line of `pfctl -s info` ("Status:
// Enabled for 0 days 01:02:03" or "Status: Disabled").
func parsePfctlInfo(b []byte) (enabled bool, status string, err error) {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Status:")
		if !ok {
			continue
		}
		// "Status: Enabled for 0 days 00:12:34           Debug: Urgent"
		if i := strings.Index(rest, "Debug:"); i >= 0 {
			rest = rest[:i]
		}
		status = strings.Join(strings.Fields(rest), " ")
		switch {
		case strings.HasPrefix(status, "Enabled"):
			return true, status, nil
		case strings.HasPrefix(status, "Disabled"):
			return false, status, nil
		}
		return false, status, fmt.Errorf("pfctl -s info: unknown status %q", status)
	}
	return false, "", errors.New("pfctl -s info: no Status line")
}
