package controls

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/collectors/antimalware"
	"github.com/evident-dev/evident/collectors/diskencryption"
	"github.com/evident-dev/evident/collectors/firewall"
	"github.com/evident-dev/evident/collectors/patches"
	"github.com/evident-dev/evident/collectors/screenlock"
	"github.com/evident-dev/evident/collectors/secureboot"
	"github.com/evident-dev/evident/server/store"
)

func checkDiskEncryption(in Input) Result {
	p, o, r, ok := observed[diskencryption.Payload](in, diskencryption.Name)
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
		case v.Encrypted:
			enc = append(enc, label+" ("+v.Method+")")
		default:
			plain = append(plain, label)
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
}

// monthlyCycle is Windows' cumulative update cadence (Patch Tuesday).
const monthlyCycle = 31 * 24 * time.Hour

// historyScan bounds how far back security_patches looks for the start of
// the current pending period.
const historyScan = 2000

func newSecurityPatches(raw json.RawMessage) (evaluator, error) {
	p := securityPatchParams{MaxDays: 14}
	if err := strictParams(raw, &p); err != nil {
		return nil, err
	}
	if p.MaxDays < 0 {
		return nil, fmt.Errorf("max_days must not be negative")
	}
	grace := time.Duration(p.MaxDays) * 24 * time.Hour
	return func(in Input) Result {
		pl, o, r, ok := observed[patches.Payload](in, patches.Name)
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
		if pl.PendingSecurityUpdates == 0 {
			return decided(o, store.Pass, fmt.Sprintf("no pending security updates (%s, %s)", pl.Manager, osName), facts)
		}
		since := pendingSince(in, o)
		pending := o.CollectedAt.Sub(since)
		facts["pending_since"] = since.UTC().Format(time.RFC3339Nano)
		names := make([]string, 0, 5)
		for i, pk := range pl.PendingSecurity {
			if i == 5 {
				names = append(names, "…")
				break
			}
			names = append(names, pk.Name)
		}
		what := fmt.Sprintf("%d security updates pending (%s) for %s", pl.PendingSecurityUpdates, strings.Join(names, ", "), humanDays(pending))
		if pending > grace {
			return decided(o, store.Fail, what+fmt.Sprintf(", longer than the %d-day window", p.MaxDays), facts)
		}
		return decided(o, store.Pass, what+fmt.Sprintf(", within the %d-day window", p.MaxDays), facts)
	}, nil
}

// pendingSince says since when security updates have been pending without a
// break, as seen by the server. The open interval of the control carries it
// forward from one evaluation to the next; only without one (the first
// evaluation, or a policy change) is the history scanned, newest first, back
// to the last observation with none pending.
func pendingSince(in Input, o store.Observation) time.Time {
	if in.prev != nil && len(in.prev.Evidence) > 0 {
		var ev struct {
			Seq   uint64 `json:"seq"`
			Facts struct {
				Pending *int      `json:"pending_security_updates"`
				Since   time.Time `json:"pending_since"`
			} `json:"facts"`
		}
		if json.Unmarshal(in.prev.Evidence, &ev) == nil && ev.Facts.Pending != nil && ev.Seq <= o.Seq {
			if *ev.Facts.Pending == 0 {
				return o.CollectedAt
			}
			if !ev.Facts.Since.IsZero() && !ev.Facts.Since.After(o.CollectedAt) {
				return ev.Facts.Since
			}
		}
	}
	since := o.CollectedAt
	if in.History == nil {
		return since
	}
	hist, err := in.History(patches.Name, historyScan)
	if err != nil {
		return since
	}
	for _, h := range hist {
		var hp patches.Payload
		if h.Status != "ok" || json.Unmarshal(h.Payload, &hp) != nil || hp.PendingSecurityUpdates == 0 {
			break
		}
		since = h.CollectedAt
	}
	return since
}

func humanDays(d time.Duration) string {
	if d < 24*time.Hour {
		return "less than a day as seen by the server"
	}
	return fmt.Sprintf("%d days as seen by the server", int(d/(24*time.Hour)))
}

func checkAutoUpdates(in Input) Result {
	p, o, r, ok := observed[patches.Payload](in, patches.Name)
	if !ok {
		return r
	}
	if p.AutoUpdates == nil {
		return decided(o, store.Unknown, "automatic update configuration not found", nil)
	}
	a := p.AutoUpdates
	if a.Enabled {
		return decided(o, store.Pass, "automatic updates enabled ("+a.Mechanism+")", a)
	}
	why := "automatic updates not enabled"
	if a.Mechanism != "" {
		why += " (" + a.Mechanism + ")"
	}
	if a.Detail != "" {
		why += ": " + a.Detail
	}
	return decided(o, store.Fail, why, a)
}

func checkFirewall(in Input) Result {
	p, o, r, ok := observed[firewall.Payload](in, firewall.Name)
	if !ok {
		return r
	}
	facts := p.Backends
	detail := ""
	for _, b := range p.Backends {
		if b.Name == p.DecidedBy && b.Detail != "" {
			detail = ": " + b.Detail
		}
	}
	switch {
	case p.Enabled && p.InboundDefaultDeny:
		return decided(o, store.Pass, "inbound default deny in force ("+p.DecidedBy+detail+")", facts)
	case p.Enabled:
		return decided(o, store.Fail, "firewall active but inbound traffic is accepted by default ("+p.DecidedBy+detail+")", facts)
	}
	var on, off []string
	for _, b := range p.Backends {
		if b.Active {
			on = append(on, b.Name)
		} else {
			off = append(off, b.Name)
		}
	}
	if len(on) > 0 {
		return decided(o, store.Fail, "host firewall not enabled everywhere: off for "+strings.Join(off, ", "), facts)
	}
	return decided(o, store.Fail, "no active host firewall found", facts)
}

func checkSecureBoot(in Input) Result {
	if r, ok := attestedSecureBoot(in); ok {
		return r
	}
	p, o, r, ok := observed[secureboot.Payload](in, secureboot.Name)
	if !ok {
		return r
	}
	switch {
	case !p.UEFI:
		return decided(o, store.NotApplicable, "booted without UEFI firmware: Secure Boot does not exist on this machine", p)
	case p.Enabled == nil:
		return decided(o, store.Unknown, "UEFI present but the SecureBoot variable could not be read", p)
	case !*p.Enabled:
		return decided(o, store.Fail, "Secure Boot is disabled"+selfReported, p)
	case p.SetupMode != nil && *p.SetupMode:
		return decided(o, store.Fail, "Secure Boot firmware is in setup mode: keys are not enforced"+selfReported, p)
	default:
		return decided(o, store.Pass, "Secure Boot enabled and enforcing"+selfReported, p)
	}
}

func checkAgentFresh(in Input) Result {
	if in.LastSeen == nil {
		return Result{Status: store.Unknown, Reason: "the agent has never reported"}
	}
	// Policy.Evaluate fails it when LastSeen is older than the control's
	// max_age.
	return Result{Status: store.Pass, Reason: "last report received " + in.LastSeen.UTC().Format(time.RFC3339), EvidenceAt: *in.LastSeen}
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
		a, o, r, ok := observed[antimalware.Payload](in, antimalware.Name)
		if !ok {
			return r
		}
		var stale, stopped []string
		builtin := map[string]bool{}
		for _, pr := range a.Products {
			switch {
			case pr.Kind == "builtin":
				builtin[pr.Name] = pr.Running
			case !pr.Running || (pr.RealTime != nil && !*pr.RealTime):
				stopped = append(stopped, pr.Name)
			case pr.UpToDate != nil && !*pr.UpToDate:
				stale = append(stale, pr.Name+" (definitions out of date)")
			case pr.DefinitionsUpdated != nil && o.CollectedAt.Sub(*pr.DefinitionsUpdated) > window:
				stale = append(stale, fmt.Sprintf("%s (definitions %d days old)", pr.Name, int(o.CollectedAt.Sub(*pr.DefinitionsUpdated)/(24*time.Hour))))
			default:
				return decided(o, store.Pass, pr.Name+" running"+definitionsNote(pr, o.CollectedAt), a.Products)
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
		case builtin["XProtect"]:
			return decided(o, store.Fail, "Gatekeeper is disabled, and no other anti-malware or EDR runs", a.Products)
		default:
			return decided(o, store.Fail, "no anti-malware or EDR agent found", a.Products)
		}
	}, nil
}

func definitionsNote(p antimalware.Product, at time.Time) string {
	if p.DefinitionsUpdated == nil {
		return ""
	}
	d := at.Sub(*p.DefinitionsUpdated)
	if d < 24*time.Hour {
		return ", definitions updated within a day"
	}
	return fmt.Sprintf(", definitions %d days old", int(d/(24*time.Hour)))
}

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
		s, o, r, ok := observed[screenlock.Payload](in, screenlock.Name)
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
		default:
			return decided(o, store.Pass, fmt.Sprintf("the screen locks after %d s of inactivity%s", *s.IdleSeconds, enforced), s)
		}
	}, nil
}
