package controls

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/store"
)

func checkDiskEncryption(in Input) Result {
	p, o, r, ok := observed[evidence.DiskEncryptionPayload](in, evidence.DiskEncryption)
	if !ok {
		return r
	}
	var enc, plain, exempt []string
	for _, v := range p.Volumes {
		label := v.Device
		if len(v.Mountpoints) > 0 {
			label = strings.Join(v.Mountpoints, ",") + " on " + v.Device
		} else if v.Role == "swap" {
			label = "swap on " + v.Device
		}
		switch {
		case v.Exempt:
			exempt = append(exempt, label+" ("+v.ExemptReason+")")
		case v.Encrypted && !converting(v):
			enc = append(enc, label+" ("+v.Method+volumeNote(v)+")")
		default:
			plain = append(plain, label+volumeState(v))
		}
	}
	facts := map[string]any{"encrypted": enc, "unencrypted": plain, "exempt": exempt}
	switch {
	case len(plain) > 0:
		return decided(o, store.Fail, fmt.Sprintf("%d of %d fixed volumes not encrypted: %s",
			len(plain), len(plain)+len(enc), strings.Join(plain, "; ")), facts)
	case len(enc) == 0:
		return decided(o, store.Unknown, "no fixed volume found to judge", facts)
	default:
		return decided(o, store.Pass, fmt.Sprintf("all %d fixed volumes encrypted: %s", len(enc), strings.Join(enc, "; ")), facts)
	}
}

type securityPatchParams struct {
	MaxDays int `json:"max_days"`
	// MaxIndexAgeDays bounds the age of the package index behind a pass.
	MaxIndexAgeDays int `json:"max_index_age_days"`
	// AllowUnreportedIndexAge lets payloads of agents older than patches
	// parser v2 (no index age) pass as before; off by default.
	AllowUnreportedIndexAge bool `json:"allow_unreported_index_age"`
	// UndatedAgeFromFirstSeen counts the age of undated pending updates
	// (apt, apk, macOS: the package manager gives no release date) from
	// the first report that listed them, even when no earlier report
	// showed none pending. Off by default: such updates may have been
	// released long before the device enrolled, so the check says
	// unknown until they are installed or the window has passed.
	UndatedAgeFromFirstSeen bool `json:"undated_age_from_first_seen"`
}

// monthlyCycle is Windows' cumulative update cadence (Patch Tuesday).
const monthlyCycle = 31 * 24 * time.Hour

// historyScan bounds how far back security_patches looks for the start of
// the current pending period.
const historyScan = 2000

func newSecurityPatches(raw json.RawMessage) (evaluator, error) {
	p := securityPatchParams{MaxDays: 14, MaxIndexAgeDays: defaultMaxIndexAgeDays}
	if err := strictParams(raw, &p); err != nil {
		return nil, err
	}
	if p.MaxDays < 0 {
		return nil, fmt.Errorf("max_days must not be negative")
	}
	if p.MaxIndexAgeDays <= 0 {
		return nil, fmt.Errorf("max_index_age_days must be positive")
	}
	grace := time.Duration(p.MaxDays) * 24 * time.Hour
	return func(in Input) Result {
		pl, o, r, ok := observed[evidence.PatchesPayload](in, evidence.Patches)
		if !ok {
			return r
		}
		osName := pl.OS.PrettyName
		if osName == "" {
			osName = strings.TrimSpace(pl.OS.ID + " " + pl.OS.VersionID)
		}
		facts := map[string]any{"manager": pl.Manager, "os": osName,
			"pending_security_updates": pl.PendingSecurityUpdates, "pending_updates": pl.PendingUpdates}
		if pl.OS.EndOfLife != nil {
			facts["end_of_life"] = pl.OS.EndOfLife.Format(time.DateOnly)
			if !o.CollectedAt.Before(*pl.OS.EndOfLife) {
				return decided(o, store.Fail, fmt.Sprintf("%s reached end of security support on %s", osName,
					pl.OS.EndOfLife.Format(time.DateOnly)), facts)
			}
		}
		if pl.Manager == "" {
			if pl.OS.ID == "windows" {
				// Pending updates need the Windows Update Agent API. Windows
				// ships cumulative security updates every month, so the
				// newest installed update tells whether the host keeps up:
				// older than the window plus one monthly cycle means at
				// least one cumulative update is missing.
				if pl.LastSuccessfulUpdate == nil {
					return decided(o, store.Unknown, osName+" is in support, but no installed update date was found and pending Windows updates are not read", facts)
				}
				age := o.CollectedAt.Sub(*pl.LastSuccessfulUpdate)
				days := int(age / (24 * time.Hour))
				facts["newest_update_installed"] = pl.LastSuccessfulUpdate.Format(time.DateOnly)
				if age > grace+monthlyCycle {
					return decided(o, store.Fail, fmt.Sprintf("newest Windows update installed %d days ago: with monthly cumulative updates, more than %d days means a security update is missing", days, p.MaxDays+31), facts)
				}
				return decided(o, store.Pass, fmt.Sprintf("newest Windows update installed %d days ago, within a monthly cycle plus the %d-day window (%s)", days, p.MaxDays, osName), facts)
			}
			return decided(o, store.Unknown, "no supported package manager found", facts)
		}
		// Pending counts read from a stale index can only be too low: a
		// fail stands, a pass needs a fresh index.
		fresh, freshOK := indexFresh(pl, o.CollectedAt, p.MaxIndexAgeDays, p.AllowUnreportedIndexAge, facts)
		if pl.PendingSecurityUpdates == 0 {
			if !freshOK {
				return decided(o, store.Unknown, fmt.Sprintf("no pending security updates reported (%s, %s), but %s", pl.Manager, osName, fresh), facts)
			}
			return decided(o, store.Pass, fmt.Sprintf("no pending security updates (%s, %s)%s", pl.Manager, osName, indexNote(pl, o.CollectedAt)), facts)
		}
		run := pendingSince(in, o, p)
		pending := o.CollectedAt.Sub(run.since)
		facts["pending_since"] = run.since.UTC().Format(time.RFC3339Nano)
		facts["pending_after"] = ""
		if !run.after.IsZero() {
			facts["pending_after"] = run.after.UTC().Format(time.RFC3339Nano)
		}
		what := fmt.Sprintf("%d security updates pending (%s)", pl.PendingSecurityUpdates, pendingNames(pl))
		seen := humanDays(pending)
		if pl.OldestPendingSecurityDays != nil {
			// The package metadata dates the advisories: the oldest one's
			// age decides, unless the server saw updates pending longer.
			days := *pl.OldestPendingSecurityDays
			facts["oldest_pending_security_days"] = days
			if days > p.MaxDays {
				return decided(o, store.Fail, what+fmt.Sprintf(", the oldest released %d days ago (%s advisory dates), longer than the %d-day window", days, pl.Manager, p.MaxDays), facts)
			}
			if pending > grace {
				return decided(o, store.Fail, what+fmt.Sprintf(" for %s, longer than the %d-day window", seen, p.MaxDays), facts)
			}
			if !freshOK {
				return decided(o, store.Unknown, what+fmt.Sprintf(", the oldest released %s, within the %d-day window, but %s", releasedDays(days), p.MaxDays, fresh), facts)
			}
			return decided(o, store.Pass, what+fmt.Sprintf(", the oldest released %s (%s advisory dates), within the %d-day window%s", releasedDays(days), pl.Manager, p.MaxDays, indexNote(pl, o.CollectedAt)), facts)
		}
		if pending > grace {
			return decided(o, store.Fail, what+fmt.Sprintf(" for %s, longer than the %d-day window", seen, p.MaxDays), facts)
		}
		bounded := !run.after.IsZero()
		switch {
		case p.UndatedAgeFromFirstSeen:
		case !bounded:
			// Nothing bounds when these were released: the first report
			// that the server still has already listed them.
			return decided(o, store.Unknown, what+fmt.Sprintf(" for %s; released on an unknown date: %s does not date its updates, and the first report the server holds (%s) already listed them, so the %d-day window cannot be checked until they are installed or it has passed",
				seen, pl.Manager, run.since.UTC().Format(time.DateOnly), p.MaxDays), facts)
		case o.CollectedAt.Sub(run.after) > grace:
			// Released after the last report with none pending, but that
			// report is older than the window and none came in between
			// (the device was off, say): they may be older than the window.
			return decided(o, store.Unknown, what+fmt.Sprintf(" for %s; released after the report of %s that showed none pending, but the server has no report between it and %s, so whether they are older than the %d-day window is unknown",
				seen, run.after.UTC().Format(time.DateOnly), run.since.UTC().Format(time.DateOnly), p.MaxDays), facts)
		}
		if !freshOK {
			return decided(o, store.Unknown, what+fmt.Sprintf(" for %s, within the %d-day window, but %s", seen, p.MaxDays, fresh), facts)
		}
		if !bounded {
			return decided(o, store.Pass, what+fmt.Sprintf(", age unknown (%s does not date its updates), counted by policy from the first report listing them (%s): %s, within the %d-day window%s",
				pl.Manager, run.since.UTC().Format(time.DateOnly), seen, p.MaxDays, indexNote(pl, o.CollectedAt)), facts)
		}
		return decided(o, store.Pass, what+fmt.Sprintf(" for %s, within the %d-day window%s", seen, p.MaxDays, indexNote(pl, o.CollectedAt)), facts)
	}, nil
}

// pendingNames names the first five pending security updates, and says how
// many more there are, listed or not.
func pendingNames(pl evidence.PatchesPayload) string {
	const shown = 5
	names := make([]string, 0, shown)
	for i, pk := range pl.PendingSecurity {
		if i == shown {
			break
		}
		names = append(names, pk.Name)
	}
	s := strings.Join(names, ", ")
	switch more := pl.PendingSecurityUpdates - len(names); {
	case more <= 0:
	case len(names) == 0:
		s = "not listed by the agent"
	default:
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

func releasedDays(d int) string {
	switch d {
	case 0:
		return "less than a day ago"
	case 1:
		return "1 day ago"
	}
	return fmt.Sprintf("%d days ago", d)
}

// pendingRun is the current run of reports with security updates pending.
type pendingRun struct {
	// since is the collection time of the run's first report.
	since time.Time
	// after is the collection time of the report with none pending, read
	// from a fresh package index, that precedes the run: nothing pending
	// now was released long before it. Zero when the server holds none:
	// the updates may predate every report it holds.
	after time.Time
}

// pendingSince says since when security updates have been pending without a
// break, as seen by the server. The open interval of the control carries it
// forward from one evaluation to the next; only without one (the first
// evaluation, or a policy change) is the history scanned, newest first, back
// to the last report with none pending by a fresh package index. A failed,
// undecodable or manager-less report, or one with none pending by a stale
// index, says nothing of pending updates: it does not end the run, and it
// belongs to it (updates may have been pending, unseen, then).
func pendingSince(in Input, o store.Observation, p securityPatchParams) pendingRun {
	var prev json.RawMessage
	if in.prev != nil {
		prev, _ = in.prev.EvidenceJSON() // unreadable: scanned from history below
	}
	if len(prev) > 0 {
		var ev struct {
			Seq         uint64    `json:"seq"`
			CollectedAt time.Time `json:"collected_at"`
			Facts       struct {
				Pending *int      `json:"pending_security_updates"`
				Since   time.Time `json:"pending_since"`
				After   *string   `json:"pending_after"`
			} `json:"facts"`
		}
		if json.Unmarshal(prev, &ev) == nil && ev.Facts.Pending != nil && ev.Seq <= o.Seq {
			// The previous evaluation passed on none pending (so by a
			// fresh index): it bounds the run starting now.
			if *ev.Facts.Pending == 0 && in.prev.Status == store.Pass && !ev.CollectedAt.IsZero() && !ev.CollectedAt.After(o.CollectedAt) {
				return pendingRun{since: o.CollectedAt, after: ev.CollectedAt}
			}
			// Intervals stored before the bound was recorded are rescanned.
			if *ev.Facts.Pending > 0 && ev.Facts.After != nil && !ev.Facts.Since.IsZero() && !ev.Facts.Since.After(o.CollectedAt) {
				run := pendingRun{since: ev.Facts.Since}
				if *ev.Facts.After != "" {
					t, err := time.Parse(time.RFC3339Nano, *ev.Facts.After)
					if err == nil && !t.After(run.since) {
						run.after = t
					}
				}
				return run
			}
		}
	}
	run := pendingRun{since: o.CollectedAt}
	if in.History == nil {
		return run
	}
	hist, err := in.History(evidence.Patches, historyScan)
	if err != nil {
		return run
	}
	for _, h := range hist {
		if h.CollectedAt.After(o.CollectedAt) {
			continue
		}
		if h.Status == "ok" {
			hp, err := evidence.Decode[evidence.PatchesPayload](evidence.Patches, h.ParserVersion, h.Payload)
			if err == nil && hp.Manager != "" && hp.PendingSecurityUpdates == 0 {
				if _, fresh := indexFresh(hp, h.CollectedAt, p.MaxIndexAgeDays, p.AllowUnreportedIndexAge, map[string]any{}); fresh {
					run.after = h.CollectedAt
					break
				}
			}
		}
		run.since = h.CollectedAt
	}
	return run
}

func humanDays(d time.Duration) string {
	if d < 24*time.Hour {
		return "less than a day as seen by the server"
	}
	if d < 48*time.Hour {
		return "1 day as seen by the server"
	}
	return fmt.Sprintf("%d days as seen by the server", int(d/(24*time.Hour)))
}

// autoUpdatesScheduleVersion is the patches parser that checks that the
// update job is scheduled (timers, the Windows Update service, managed
// macOS preferences); older agents' "enabled" says only that a setting
// was found.
const autoUpdatesScheduleVersion = 3

func checkAutoUpdates(in Input) Result {
	p, o, r, ok := observed[evidence.PatchesPayload](in, evidence.Patches)
	if !ok {
		return r
	}
	if p.AutoUpdates == nil {
		return decided(o, store.Unknown, "automatic update configuration not found", nil)
	}
	a := p.AutoUpdates
	what := "automatic updates"
	if a.Mechanism != "" {
		what += " (" + a.Mechanism + ")"
	}
	switch {
	case a.Unknown:
		return decided(o, store.Unknown, what+" could not be determined: "+a.Detail, a)
	case a.Enabled && o.ParserVersion < autoUpdatesScheduleVersion:
		return decided(o, store.Unknown, fmt.Sprintf("%s configured (%s), but this agent (patches parser v%d) does not check that the update job is scheduled: upgrade the agent",
			what, a.Detail, o.ParserVersion), a)
	case a.Enabled:
		return decided(o, store.Pass, autoUpdatesReason("automatic updates enabled", a), a)
	}
	return decided(o, store.Fail, autoUpdatesReason("automatic updates not enabled", a), a)
}

// autoUpdatesReason: "automatic updates enabled (mechanism): detail".
func autoUpdatesReason(head string, a *evidence.AutoUpdates) string {
	if a.Mechanism != "" {
		head += " (" + a.Mechanism + ")"
	}
	if a.Detail != "" {
		head += ": " + a.Detail
	}
	return head
}

// secureBootShimVersion is the secureboot parser that reads shim's
// MokSBStateRT on Linux.
const secureBootShimVersion = 2

func checkSecureBoot(in Input) Result {
	if r, ok := attestedSecureBoot(in); ok {
		return r
	}
	p, o, r, ok := observed[evidence.SecureBootPayload](in, evidence.SecureBoot)
	if !ok {
		return r
	}
	// Only Linux reports SetupMode and shim's state; the device's OS tells
	// a Linux payload that lacks both.
	linux := p.SetupMode != nil || p.ShimValidation != nil || (in.Device != nil && in.Device.OS == "linux")
	switch {
	case !p.UEFI:
		return decided(o, store.NotApplicable, "booted without UEFI firmware: Secure Boot does not exist on this machine", p)
	case p.Enabled == nil:
		return decided(o, store.Unknown, "UEFI present but the SecureBoot variable could not be read", p)
	case !*p.Enabled:
		return decided(o, store.Fail, "Secure Boot is disabled"+selfReported, p)
	case p.SetupMode != nil && *p.SetupMode:
		return decided(o, store.Fail, "Secure Boot firmware is in setup mode: keys are not enforced"+selfReported, p)
	case p.ShimValidation != nil && !*p.ShimValidation:
		return decided(o, store.Fail, "SecureBoot validation is disabled in shim (MokSBStateRT = 1, mokutil --disable-validation): "+
			"the firmware enforces, but the bootloader and kernel are not verified"+selfReported, p)
	case linux && p.SetupMode == nil:
		return decided(o, store.Unknown, "SecureBoot reads 1 but the SetupMode variable could not be read: enforcement is not known"+selfReported, p)
	case linux && p.ShimValidation == nil:
		return decided(o, store.Unknown, fmt.Sprintf("Secure Boot enabled, but this agent (secureboot parser v%d) does not read shim's validation state: upgrade the agent", o.ParserVersion), p)
	default:
		return decided(o, store.Pass, "Secure Boot enabled and enforcing"+selfReported, p)
	}
}

// checkAgentFresh dates the newest evidence the server accepted from the
// device by the server's receive time: never the device's collected_at,
// and not a mere connection (LastSeen also moves on rejected or replayed,
// already stored observations).
func checkAgentFresh(in Input) Result {
	var newest store.Observation
	for _, o := range in.Latest {
		if o.Collector == "server.rejected" || o.ReceivedAt.IsZero() {
			continue
		}
		if o.ReceivedAt.After(newest.ReceivedAt) {
			newest = o
		}
	}
	switch {
	case in.LastSeen == nil && newest.ReceivedAt.IsZero():
		return Result{Status: store.Unknown, Reason: "the agent has never reported"}
	case newest.ReceivedAt.IsZero():
		return Result{Status: store.Unknown, Reason: "the agent connected (last " + in.LastSeen.UTC().Format(time.RFC3339) +
			"), but the server has accepted no evidence from it"}
	case !in.Now.IsZero() && newest.ReceivedAt.After(in.Now):
		return Result{Status: store.Unknown, Reason: "the newest evidence was received after the evaluation time " + in.Now.UTC().Format(time.RFC3339) +
			": freshness at that time is not known", ChangesAt: newest.ReceivedAt}
	}
	// Policy.Evaluate fails it when the evidence is older than the
	// control's max_age.
	return Result{Status: store.Pass, Reason: "last report received " + newest.ReceivedAt.UTC().Format(time.RFC3339), EvidenceAt: newest.ReceivedAt}
}

type antimalwareParams struct {
	MaxDefinitionsDays int `json:"max_definitions_days"`
}

func newAntimalware(raw json.RawMessage) (evaluator, error) {
	p := antimalwareParams{MaxDefinitionsDays: 7}
	if err := strictParams(raw, &p); err != nil {
		return nil, err
	}
	if p.MaxDefinitionsDays <= 0 {
		return nil, fmt.Errorf("max_definitions_days must be positive")
	}
	window := time.Duration(p.MaxDefinitionsDays) * 24 * time.Hour
	return func(in Input) Result {
		a, o, r, ok := observed[evidence.AntimalwarePayload](in, evidence.Antimalware)
		if !ok {
			return r
		}
		var stale, stopped, unverified []string
		builtin := map[string]bool{}
		for _, pr := range a.Products {
			switch {
			case pr.Kind == "builtin":
				builtin[pr.Name] = pr.Running
			case unverifiedProcess(pr):
				unverified = append(unverified, pr.Name)
			case !pr.Running && pr.FoundBy == "process":
				stopped = append(stopped, pr.Name+" ("+pr.Detail+")")
			case !pr.Running || (pr.RealTime != nil && !*pr.RealTime):
				stopped = append(stopped, pr.Name)
			case pr.UpToDate != nil && !*pr.UpToDate:
				stale = append(stale, pr.Name+" (definitions out of date)")
			case pr.DefinitionsUpdated != nil && o.CollectedAt.Sub(*pr.DefinitionsUpdated) > window:
				stale = append(stale, fmt.Sprintf("%s (definitions %d days old)", pr.Name, int(o.CollectedAt.Sub(*pr.DefinitionsUpdated)/(24*time.Hour))))
			default:
				return decided(o, store.Pass, pr.Name+" running"+evidenceNote(pr)+definitionsNote(pr, o.CollectedAt), a.Products)
			}
		}
		// macOS: XProtect is always there; it protects only while
		// Gatekeeper assesses what runs.
		if xp, ok := builtin["XProtect"]; ok && xp {
			if gk, ok := builtin["Gatekeeper"]; ok && gk {
				return decided(o, store.Pass, "XProtect and Gatekeeper enabled (built into macOS)", a.Products)
			}
		}
		switch {
		case len(stale) > 0:
			return decided(o, store.Fail, fmt.Sprintf("anti-malware with stale definitions (window %d days): %s", p.MaxDefinitionsDays, strings.Join(stale, "; ")), a.Products)
		case len(stopped) > 0:
			return decided(o, store.Fail, "anti-malware installed but not protecting: "+strings.Join(stopped, ", "), a.Products)
		case len(unverified) > 0:
			return decided(o, store.Unknown, "found by process name only, which any user's process can match (agent older than antimalware parser v2): "+strings.Join(unverified, ", "), a.Products)
		case builtin["XProtect"]:
			return decided(o, store.Fail, "Gatekeeper is disabled, and no other anti-malware or EDR runs", a.Products)
		default:
			return decided(o, store.Fail, "no anti-malware or EDR agent found", a.Products)
		}
	}, nil
}

func definitionsNote(p evidence.AntimalwareProduct, at time.Time) string {
	if p.DefinitionsUpdated == nil {
		return ""
	}
	d := at.Sub(*p.DefinitionsUpdated)
	if d < 24*time.Hour {
		return ", definitions updated within a day"
	}
	return fmt.Sprintf(", definitions %d days old", int(d/(24*time.Hour)))
}

// screenLockLocksVersion is the screenlock parser that requires GNOME's
// lock-delay to be locked and reads disable-lock-screen and
// idle-activation-enabled.
const screenLockLocksVersion = 2

type screenLockParams struct {
	MaxIdleSeconds int `json:"max_idle_seconds"`
}

func newScreenLock(raw json.RawMessage) (evaluator, error) {
	p := screenLockParams{MaxIdleSeconds: 900}
	if err := strictParams(raw, &p); err != nil {
		return nil, err
	}
	if p.MaxIdleSeconds <= 0 {
		return nil, fmt.Errorf("max_idle_seconds must be positive")
	}
	return func(in Input) Result {
		s, o, r, ok := observed[evidence.ScreenLockPayload](in, evidence.ScreenLock)
		if !ok {
			return r
		}
		enforced := " (enforced by policy)"
		if !s.Enforced {
			enforced = " (not enforced: users may change it)"
		}
		switch {
		case !s.Applicable:
			return decided(o, store.NotApplicable, s.Detail, s)
		case s.Enabled == nil:
			return decided(o, store.Unknown, "screen lock settings could not be read: "+s.Detail, s)
		case !*s.Enabled:
			return decided(o, store.Fail, "the screen does not lock after inactivity: "+s.Detail, s)
		case s.PasswordOnWake != nil && !*s.PasswordOnWake:
			return decided(o, store.Fail, "no password is asked on wake: "+s.Detail, s)
		case s.IdleSeconds == nil:
			return decided(o, store.Unknown, "the screen locks, but the idle time is not known: "+s.Detail, s)
		case *s.IdleSeconds > p.MaxIdleSeconds:
			return decided(o, store.Fail, fmt.Sprintf("the screen locks after %d s of inactivity, more than %d s%s", *s.IdleSeconds, p.MaxIdleSeconds, enforced), s)
		case !s.Enforced:
			// A setting users may change is a default, not a control: each
			// user's own value (not read) wins over it.
			return decided(o, store.Unknown, fmt.Sprintf("the system setting locks the screen after %d s, but it is not enforced: each user's own setting overrides it and is not read: %s",
				*s.IdleSeconds, s.Detail), s)
		case s.Mechanism == "gnome-dconf" && o.ParserVersion < screenLockLocksVersion:
			return decided(o, store.Unknown, fmt.Sprintf("the screen locks after %d s, but this agent (screenlock parser v%d) does not check the lock-delay lock or disable-lock-screen: upgrade the agent",
				*s.IdleSeconds, o.ParserVersion), s)
		default:
			return decided(o, store.Pass, fmt.Sprintf("the screen locks after %d s of inactivity%s", *s.IdleSeconds, enforced), s)
		}
	}, nil
}
