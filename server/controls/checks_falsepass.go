package controls

import (
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
)

// defaultMaxIndexAgeDays is how old a package index may be before "no
// pending security updates" stops being evidence.
const defaultMaxIndexAgeDays = 7

// indexFresh says whether a patches payload's package index is recent
// enough, at collection time at, for its pending counts to support a pass.
// When it is not, reason says why (the verdict is then unknown, never
// pass). An agent older than parser v2 reports no index age: unless the
// policy allows it (allowUnreported, meant for the time agents are being
// upgraded), that is unknown too.
func indexFresh(pl evidence.PatchesPayload, at time.Time, maxDays int, allowUnreported bool, facts map[string]any) (reason string, ok bool) {
	ix := pl.Index
	switch {
	case ix == nil && allowUnreported:
		facts["package_index"] = "age not reported by this agent version (allowed by policy)"
		return "", true
	case ix == nil:
		return "package index age cannot be read: this agent version does not report it (upgrade the agent, or set allow_unreported_index_age during the upgrade)", false
	case ix.Refreshed == nil:
		why := ix.Error
		if why == "" {
			why = "no refresh time reported"
		}
		return "package index age cannot be read: " + why, false
	}
	facts["package_index_refreshed"] = ix.Refreshed.UTC().Format(time.RFC3339)
	facts["package_index_source"] = ix.Source
	age := at.Sub(*ix.Refreshed)
	if age > time.Duration(maxDays)*24*time.Hour {
		return fmt.Sprintf("package index last refreshed %d days ago (limit %d; %s): pending updates published since are not seen",
			int(age/(24*time.Hour)), maxDays, ix.Source), false
	}
	return "", true
}

// indexNote is appended to a pass reason: which source dated the index.
func indexNote(pl evidence.PatchesPayload, at time.Time) string {
	if pl.Index == nil || pl.Index.Refreshed == nil {
		return ""
	}
	d := at.Sub(*pl.Index.Refreshed)
	if d < 24*time.Hour {
		return "; package index refreshed within a day (" + pl.Index.Source + ")"
	}
	return fmt.Sprintf("; package index refreshed %d days ago (%s)", int(d/(24*time.Hour)), pl.Index.Source)
}

// unverifiedProcess is a product an agent older than antimalware parser v2
// found by process name alone: it says nothing about who runs what.
func unverifiedProcess(p evidence.AntimalwareProduct) bool {
	return p.Running && p.FoundBy == "" && strings.HasPrefix(p.Detail, "process ")
}

// evidenceNote names what found a passing product.
func evidenceNote(p evidence.AntimalwareProduct) string {
	switch p.FoundBy {
	case "process":
		return " (" + p.Detail + ")"
	case "wmi":
		return " (reported by Windows: " + p.Detail + ")"
	}
	return ""
}

// converting reports a volume in a transition that must not pass even if
// a payload marks it encrypted: data is being decrypted, not yet fully
// encrypted, or its protection is suspended.
func converting(v evidence.DiskVolume) bool {
	switch v.State {
	case "encrypting", "decrypting", "paused", "off":
		return true
	}
	return false
}

// volumeState is shown to the auditor next to a volume that does not
// count: its state and the OS tool's words (FileVault and LUKS progress,
// BitLocker ConversionStatus, a null cipher).
func volumeState(v evidence.DiskVolume) string {
	switch {
	case v.Detail != "" && v.State != "" && v.State != "off":
		return " (" + v.State + ": " + v.Detail + ")"
	case v.Detail != "":
		return " (" + v.Detail + ")"
	case v.State != "" && v.State != "off":
		return " (" + v.State + ")"
	}
	return ""
}

// volumeNote adds the tool's words to an encrypted volume that has some
// (a LUKS2 reencryption to a new key in progress).
func volumeNote(v evidence.DiskVolume) string {
	if v.Detail == "" {
		return ""
	}
	return ": " + v.Detail
}
