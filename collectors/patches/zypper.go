package patches

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// zypper argv. --xmlout gives a stable, documented schema (zypper(8),
// xmlout.rnc) instead of the localised table.
var (
	zypperUpdatesArgv = []string{"zypper", "--non-interactive", "--xmlout", "list-updates"}
	zypperPatchesArgv = []string{"zypper", "--non-interactive", "--xmlout", "list-patches", "--category", "security"}
	zypperRebootArgv  = []string{"zypper", "needs-rebooting"}
)

// zypper exit codes (zypper(8) "EXIT CODES"): 1-99 are errors; 100 and up
// are informational (100 updates needed, 101 security updates needed, 102
// reboot needed, 106 some repositories skipped) and the output is valid.
const (
	zypperExitRebootNeeded = 102
	zypperExitReposSkipped = 106
)

func zypperFailed(code int) bool { return code != 0 && code < 100 }

// zypperUpdate is one <update> element of zypper's XML output, from
// `<update-list>` or `<blocked-update-list>`.
type zypperUpdate struct {
	Name     string `xml:"name,attr"`
	Edition  string `xml:"edition,attr"`
	Kind     string `xml:"kind,attr"`
	Status   string `xml:"status,attr"`   // patches: needed, applied, not-needed, ...
	Category string `xml:"category,attr"` // patches: security, recommended, ...
	Severity string `xml:"severity,attr"`
	// IssueDate is the patch's release time, when zypper prints it.
	IssueDate *struct {
		Time string `xml:"time,attr"`
	} `xml:"issue-date"`
}

// parseZypperXML parses the output of `zypper --xmlout list-updates` or
// `list-patches`: every <update> of the <update-status> element, blocked
// ones included (a locked security patch is still pending). Output without
// an <update-status> element is an error, with zypper's error messages when
// it printed some.
func parseZypperXML(b []byte) ([]zypperUpdate, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var (
		out      []zypperUpdate
		sawState bool
		errs     []string
	)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse zypper xml: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch se.Name.Local {
		case "update-status":
			sawState = true
		case "update":
			var u zypperUpdate
			if err := d.DecodeElement(&u, &se); err != nil {
				return nil, fmt.Errorf("parse zypper xml: %w", err)
			}
			out = append(out, u)
		case "message":
			var m struct {
				Type string `xml:"type,attr"`
				Text string `xml:",chardata"`
			}
			if err := d.DecodeElement(&m, &se); err != nil {
				return nil, fmt.Errorf("parse zypper xml: %w", err)
			}
			if m.Type == "error" {
				errs = append(errs, strings.TrimSpace(m.Text))
			}
		}
	}
	if !sawState {
		if len(errs) > 0 {
			return nil, fmt.Errorf("zypper: %s", strings.Join(errs, "; "))
		}
		return nil, errors.New("parse zypper xml: no <update-status> element")
	}
	return out, nil
}

// zypperPackages counts the package updates of list-updates.
func zypperPackages(us []zypperUpdate) int {
	n := 0
	for _, u := range us {
		if u.Kind == "" || u.Kind == "package" {
			n++
		}
	}
	return n
}

// zypperSecurity returns the needed security patches of list-patches,
// bounded and sorted, and the issue date of the oldest one when zypper
// dates them.
func zypperSecurity(us []zypperUpdate) (n int, list []Package, oldest *time.Time) {
	undated := false
	for _, u := range us {
		if u.Kind != "patch" || u.Status != "needed" || (u.Category != "" && u.Category != "security") {
			continue
		}
		n++
		if len(list) < maxListed {
			list = append(list, Package{Name: u.Name, Version: u.Edition, Advisory: u.Name, Severity: u.Severity})
		}
		if u.IssueDate == nil {
			undated = true
			continue
		}
		sec, err := strconv.ParseInt(strings.TrimSpace(u.IssueDate.Time), 10, 64)
		if err != nil || sec <= 0 {
			undated = true
			continue
		}
		t := time.Unix(sec, 0).UTC()
		if oldest == nil || t.Before(*oldest) {
			oldest = &t
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	if undated {
		// The dated patches alone could make the oldest look too young.
		oldest = nil
	}
	return n, list, oldest
}

// parseSysconfig returns key's value in a /etc/sysconfig shell-variable
// file (KEY="value"); the last assignment wins.
func parseSysconfig(b []byte, key string) (string, bool) {
	val, set := "", false
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.TrimSpace(k) != key {
			continue
		}
		v = strings.TrimSpace(v)
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `"'`)
		}
		val, set = v, true
	}
	return val, set
}

// zypper fills p from zypper (openSUSE, SLES). It returns
// ErrCommandNotFound when zypper is not installed.
func (r *reader) zypper(ctx context.Context, p *Payload, now time.Time) error {
	res, err := r.run(ctx, nil, zypperUpdatesArgv...)
	if err != nil {
		return err
	}
	p.Manager = "zypper"
	p.Index = r.indexAge("zypper")
	var firstErr error
	if zypperFailed(res.ExitCode) {
		firstErr = fmt.Errorf("zypper list-updates exited %d", res.ExitCode)
	} else if ups, err := parseZypperXML(res.Stdout); err != nil {
		firstErr = err
	} else {
		p.PendingUpdates = zypperPackages(ups)
	}

	// A security list that could not be read must not look like "none
	// pending": every failure becomes the collection's error.
	if sec, err := r.run(ctx, nil, zypperPatchesArgv...); err != nil {
		if firstErr == nil {
			firstErr = fmt.Errorf("zypper list-patches: %w", err)
		}
	} else {
		if sec.ExitCode == zypperExitReposSkipped && firstErr == nil {
			firstErr = fmt.Errorf("zypper list-patches exited %d: some repositories were skipped, the list is incomplete", sec.ExitCode)
		}
		if zypperFailed(sec.ExitCode) {
			if firstErr == nil {
				firstErr = fmt.Errorf("zypper list-patches exited %d", sec.ExitCode)
			}
		} else if ps, err := parseZypperXML(sec.Stdout); err != nil {
			if firstErr == nil {
				firstErr = err
			}
		} else {
			var oldest *time.Time
			p.PendingSecurityUpdates, p.PendingSecurity, oldest = zypperSecurity(ps)
			p.OldestPendingSecurityDays = daysSince(oldest, now)
		}
	}

	// needs-rebooting (zypper >= 1.14.?): exit 102 means a core library or
	// the kernel was updated since boot, 0 means no reboot is needed. Any
	// other code (an older zypper without the command) says nothing.
	if nr, err := r.run(ctx, nil, zypperRebootArgv...); err == nil && nr.ExitCode == zypperExitRebootNeeded {
		p.RebootRequired = true
		p.RebootReason = "zypper needs-rebooting exited 102"
	}

	// Automatic updates: yast2-online-update-configuration writes
	// AOU_ENABLE_CRONJOB. The os-update.timer alternative (transactional
	// systems) is not read.
	au := &AutoUpdates{Mechanism: "yast2-online-update"}
	const aou = "/etc/sysconfig/automatic_online_update"
	if b, err := r.file(aou, 64<<10, true); err != nil {
		au.Detail = aou + " not present (os-update.timer is not read)"
	} else if v, ok := parseSysconfig(b, "AOU_ENABLE_CRONJOB"); ok {
		au.Enabled = truthy(v)
		au.Detail = fmt.Sprintf("AOU_ENABLE_CRONJOB=%q", v)
	} else {
		au.Detail = "AOU_ENABLE_CRONJOB not set"
	}
	p.AutoUpdates = au
	return firstErr
}

// daysSince is whole days from t to now, never negative; nil without t.
func daysSince(t *time.Time, now time.Time) *int {
	if t == nil || now.IsZero() {
		return nil
	}
	d := int(now.Sub(*t).Hours() / 24)
	if d < 0 {
		d = 0
	}
	return &d
}
