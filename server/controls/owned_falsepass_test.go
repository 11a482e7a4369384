package controls_test

import (
	"testing"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

// Each case passed before the fix on a machine that does not meet the
// control; it must now fail or be unknown, with a reason.

func TestAutoUpdatesFalsePass(t *testing.T) {
	obs := func(v int, a *evidence.AutoUpdates) store.Observation {
		return withParser(okObs(t, evidence.Patches, 11, collected, evidence.PatchesPayload{Manager: "apt", AutoUpdates: a}), v)
	}
	runEval(t, only(t, "DC-PATCH-02"), []evalCase{
		{name: "v3 scheduled", in: controls.Input{Latest: latest(obs(3, &evidence.AutoUpdates{Enabled: true, Mechanism: "unattended-upgrades",
			Detail: "apt-daily.timer, apt-daily-upgrade.timer enabled and active"}))}, wantStatus: store.Pass, wantReason: "enabled and active", wantSeq: 11},
		// v2 said enabled from the apt setting alone (timers not read).
		{name: "v2 enabled", in: controls.Input{Latest: latest(obs(2, &evidence.AutoUpdates{Enabled: true, Mechanism: "unattended-upgrades"}))},
			wantStatus: store.Unknown, wantReason: "does not check that the update job is scheduled", wantSeq: 11},
		{name: "v2 disabled stays a fail", in: controls.Input{Latest: latest(obs(2, &evidence.AutoUpdates{Mechanism: "unattended-upgrades"}))},
			wantStatus: store.Fail, wantReason: "not enabled", wantSeq: 11},
		{name: "v3 unknown", in: controls.Input{Latest: latest(obs(3, &evidence.AutoUpdates{Unknown: true, Mechanism: "unattended-upgrades",
			Detail: "systemctl is-active: System has not been booted with systemd"}))}, wantStatus: store.Unknown, wantReason: "could not be determined", wantSeq: 11},
	})
}

func TestSecureBootFalsePass(t *testing.T) {
	yes, no := true, false
	obs := func(v int, p evidence.SecureBootPayload) store.Observation {
		return withParser(okObs(t, evidence.SecureBoot, 31, collected, p), v)
	}
	linux := &controls.DeviceFacts{OS: "linux"}
	runEval(t, only(t, "DC-BOOT-01"), []evalCase{
		{name: "shim validation disabled", in: controls.Input{Latest: latest(obs(2, evidence.SecureBootPayload{UEFI: true, Enabled: &yes, SetupMode: &no, ShimValidation: &no}))},
			wantStatus: store.Fail, wantReason: "validation is disabled in shim", wantSeq: 31},
		{name: "v1 linux: shim not read", in: controls.Input{Latest: latest(obs(1, evidence.SecureBootPayload{UEFI: true, Enabled: &yes, SetupMode: &no}))},
			wantStatus: store.Unknown, wantReason: "does not read shim's validation state", wantSeq: 31},
		{name: "linux SetupMode unreadable", in: controls.Input{Device: linux, Latest: latest(obs(2, evidence.SecureBootPayload{UEFI: true, Enabled: &yes, ShimValidation: &yes}))},
			wantStatus: store.Unknown, wantReason: "SetupMode variable could not be read", wantSeq: 31},
		{name: "windows registry on", in: controls.Input{Device: &controls.DeviceFacts{OS: "windows"}, Latest: latest(obs(2, evidence.SecureBootPayload{UEFI: true, Enabled: &yes, Detail: "UEFISecureBootEnabled = 1"}))},
			wantStatus: store.Pass, wantReason: "enforcing", wantSeq: 31},
	})
}

func TestScreenLockFalsePass(t *testing.T) {
	yes := true
	idle := 600
	obs := func(v int, p evidence.ScreenLockPayload) store.Observation {
		return withParser(okObs(t, evidence.ScreenLock, 41, collected, p), v)
	}
	gnome := func(enforced bool) evidence.ScreenLockPayload {
		return evidence.ScreenLockPayload{Applicable: true, Enabled: &yes, PasswordOnWake: &yes, IdleSeconds: &idle, Enforced: enforced, Mechanism: "gnome-dconf", Detail: "dconf system policy"}
	}
	runEval(t, only(t, "DC-LOCK-01"), []evalCase{
		{name: "v2 enforced", in: controls.Input{Latest: latest(obs(2, gnome(true)))}, wantStatus: store.Pass, wantReason: "locks after 600 s of inactivity (enforced by policy)", wantSeq: 41},
		// A system default users may change: each user's own value wins.
		{name: "not enforced", in: controls.Input{Latest: latest(obs(2, gnome(false)))}, wantStatus: store.Unknown, wantReason: "not enforced", wantSeq: 41},
		// v1 counted GNOME as enforced without the lock-delay lock and did
		// not read disable-lock-screen.
		{name: "v1 gnome enforced", in: controls.Input{Latest: latest(obs(1, gnome(true)))}, wantStatus: store.Unknown, wantReason: "screenlock parser v1", wantSeq: 41},
		{name: "windows policy", in: controls.Input{Latest: latest(obs(1, evidence.ScreenLockPayload{Applicable: true, Enabled: &yes, PasswordOnWake: &yes, IdleSeconds: &idle,
			Enforced: true, Mechanism: "windows-policy"}))}, wantStatus: store.Pass, wantReason: "600 s", wantSeq: 41},
	})
}
