package controls_test

import (
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

// withIndex gives p a package index refreshed an hour before at (what a
// parser v2 agent on a healthy host reports), unless p has one.
func withIndex(p evidence.PatchesPayload, at time.Time) evidence.PatchesPayload {
	if p.Index == nil {
		r := at.Add(-time.Hour)
		p.Index = &evidence.PackageIndex{Refreshed: &r, Source: "/var/lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_InRelease"}
	}
	return p
}

// TestSecurityPatchesStaleIndex: "no pending updates" read from a package
// index that was not refreshed is not evidence. The refresh times are
// those of the recorded Debian 12 lists
// (collectors/patches/testdata/apt-index/stat-debian12.txt: the security
// InRelease at 2026-12-06T12:15:26Z), observed at later dates.
func TestSecurityPatchesStaleIndex(t *testing.T) {
	refreshed := time.Unix(1796559326, 0).UTC()
	const sec = "/var/lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_InRelease"
	osRel := evidence.OSRelease{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"}
	obs := func(collectedAt time.Time, pending int, ix *evidence.PackageIndex) store.Observation {
		p := evidence.PatchesPayload{Manager: "apt", OS: osRel, PendingSecurityUpdates: pending, Index: ix}
		for range pending {
			p.PendingSecurity = append(p.PendingSecurity, evidence.Package{Name: "libssl3"})
		}
		return okObs(t, evidence.Patches, 7, collectedAt, p)
	}
	fresh := &evidence.PackageIndex{Refreshed: &refreshed, Source: sec}
	unreadable := &evidence.PackageIndex{Error: "no security suite index (…-security InRelease/Release) in /var/lib/apt/lists found"}
	allowOld, err := controls.Parse([]byte(policy(`{"id": "DC-PATCH-01", "check": "security_patches", "max_age": "48h", "params": {"max_days": 14, "allow_unreported_index_age": true}}`)))
	if err != nil {
		t.Fatal(err)
	}
	short, err := controls.Parse([]byte(policy(`{"id": "DC-PATCH-01", "check": "security_patches", "max_age": "48h", "params": {"max_index_age_days": 2}}`)))
	if err != nil {
		t.Fatal(err)
	}
	firstSeen, err := controls.Parse([]byte(policy(`{"id": "DC-PATCH-01", "check": "security_patches", "max_age": "48h", "params": {"undated_age_from_first_seen": true}}`)))
	if err != nil {
		t.Fatal(err)
	}
	in := func(o store.Observation) controls.Input {
		return controls.Input{Now: o.CollectedAt.Add(time.Hour), Latest: latest(o)}
	}
	def := only(t, "DC-PATCH-01")
	for _, tc := range []struct {
		p *controls.Policy
		c evalCase
	}{
		{def, evalCase{name: "index refreshed an hour before", in: in(obs(refreshed.Add(time.Hour), 0, fresh)),
			wantStatus: store.Pass, wantReason: "package index refreshed within a day (" + sec + ")", wantSeq: 7}},
		{def, evalCase{name: "index 6 days old", in: in(obs(refreshed.Add(6*day+time.Hour), 0, fresh)),
			wantStatus: store.Pass, wantReason: "package index refreshed 6 days ago", wantSeq: 7}},
		{def, evalCase{name: "index 30 days old, none pending", in: in(obs(refreshed.Add(30*day), 0, fresh)),
			wantStatus: store.Unknown, wantReason: "package index last refreshed 30 days ago (limit 7", wantSeq: 7}},
		{firstSeen, evalCase{name: "index 30 days old, pending within window", in: in(obs(refreshed.Add(30*day), 1, fresh)),
			wantStatus: store.Unknown, wantReason: "within the 14-day window, but package index last refreshed 30 days ago (limit 7", wantSeq: 7}},
		{short, evalCase{name: "policy limit 2 days", in: in(obs(refreshed.Add(3*day), 0, fresh)),
			wantStatus: store.Unknown, wantReason: "last refreshed 3 days ago (limit 2", wantSeq: 7}},
		{def, evalCase{name: "index age unreadable", in: in(obs(refreshed, 0, unreadable)),
			wantStatus: store.Unknown, wantReason: "package index age cannot be read: no security suite index", wantSeq: 7}},
		{def, evalCase{name: "old agent without index age", in: in(obs(refreshed, 0, nil)),
			wantStatus: store.Unknown, wantReason: "package index age cannot be read: this agent version does not report it", wantSeq: 7}},
		{allowOld, evalCase{name: "old agent allowed by policy", in: in(obs(refreshed, 0, nil)),
			wantStatus: store.Pass, wantReason: "no pending security updates (apt", wantSeq: 7}},
		{allowOld, evalCase{name: "allowing old agents does not excuse a stale index", in: in(obs(refreshed.Add(30*day), 0, fresh)),
			wantStatus: store.Unknown, wantReason: "last refreshed 30 days ago", wantSeq: 7}},
	} {
		runEval(t, tc.p, []evalCase{tc.c})
	}
}

func TestSecurityPatchesIndexParams(t *testing.T) {
	for _, raw := range []string{`{"max_index_age_days": 0}`, `{"max_index_age_days": -3}`} {
		if _, err := controls.Parse([]byte(policy(`{"id": "A", "check": "security_patches", "params": ` + raw + `}`))); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}

// TestAntimalwareProcessEvidence: an EDR found by process name alone is
// not evidence; one verified by the v2 collector says which evidence
// decided.
func TestAntimalwareProcessEvidence(t *testing.T) {
	obs := func(ps ...evidence.AntimalwareProduct) store.Observation {
		return okObs(t, evidence.Antimalware, 9, collected, evidence.AntimalwarePayload{Products: ps})
	}
	runEval(t, only(t, "DC-MAL-01"), []evalCase{
		{name: "old agent: name only", in: controls.Input{Latest: latest(obs(evidence.AntimalwareProduct{Name: "CrowdStrike Falcon", Kind: "edr", Running: true, Detail: "process falcon-sensor running"}))},
			wantStatus: store.Unknown, wantReason: "found by process name only", wantSeq: 9},
		{name: "look-alike from /tmp", in: controls.Input{Latest: latest(obs(evidence.AntimalwareProduct{Name: "CrowdStrike Falcon", Kind: "edr", FoundBy: "process",
			Detail: "process falcon-sensor (pid 4301, uid 0) runs /tmp/falcon-sensor, outside CrowdStrike Falcon's install location (/opt/CrowdStrike/): not counted"}))},
			wantStatus: store.Fail, wantReason: "runs /tmp/falcon-sensor, outside", wantSeq: 9},
		{name: "verified", in: controls.Input{Latest: latest(obs(evidence.AntimalwareProduct{Name: "CrowdStrike Falcon", Kind: "edr", Running: true, FoundBy: "process",
			Detail: "process falcon-sensor (pid 4242, uid 0) runs root-owned /opt/CrowdStrike/falcon-sensor"}))},
			wantStatus: store.Pass, wantReason: "CrowdStrike Falcon running (process falcon-sensor (pid 4242, uid 0) runs root-owned /opt/CrowdStrike/falcon-sensor)", wantSeq: 9},
	})
}

// TestDiskEncryptionStates: a converting volume says so, with its
// progress, in the reason; a decrypting one never passes.
func TestDiskEncryptionStates(t *testing.T) {
	obs := func(vs ...evidence.DiskVolume) store.Observation {
		return okObs(t, evidence.DiskEncryption, 4, collected, evidence.DiskEncryptionPayload{Volumes: vs})
	}
	root := func(v evidence.DiskVolume) evidence.DiskVolume {
		v.Device, v.Mountpoints, v.Role = "/dev/disk3s5", []string{"/System/Volumes/Data"}, "system"
		return v
	}
	runEval(t, only(t, "DC-ENC-01"), []evalCase{
		{name: "FileVault decrypting", in: controls.Input{Latest: latest(obs(root(evidence.DiskVolume{Method: "FileVault", State: "decrypting",
			Detail: "FileVault is Off. Decryption in progress: Percent completed = 87"})))},
			wantStatus: store.Fail, wantReason: "(decrypting: FileVault is Off. Decryption in progress: Percent completed = 87)", wantSeq: 4},
		{name: "FileVault encrypting", in: controls.Input{Latest: latest(obs(root(evidence.DiskVolume{Method: "FileVault", State: "encrypting",
			Detail: "FileVault is On. Encryption in progress: Percent completed = 42"})))},
			wantStatus: store.Fail, wantReason: "Percent completed = 42", wantSeq: 4},
		{name: "decrypting but marked encrypted", in: controls.Input{Latest: latest(obs(root(evidence.DiskVolume{Encrypted: true, Method: "BitLocker XTS-AES 128", State: "decrypting",
			Detail: "ConversionStatus 3 (DecryptionInProgress), ProtectionStatus 0 (off)"})))},
			wantStatus: store.Fail, wantReason: "decrypting: ConversionStatus 3 (DecryptionInProgress)", wantSeq: 4},
		{name: "null cipher", in: controls.Input{Latest: latest(obs(root(evidence.DiskVolume{Method: "LUKS2", State: "off",
			Detail: "dm-crypt cryptroot (LUKS2) uses cipher cipher_null-ecb: no encryption"})))},
			wantStatus: store.Fail, wantReason: "uses cipher cipher_null-ecb: no encryption", wantSeq: 4},
		{name: "reencrypting to a new key stays encrypted", in: controls.Input{Latest: latest(obs(root(evidence.DiskVolume{Encrypted: true, Method: "LUKS2", State: "encrypted",
			Detail: "LUKS2 reencrypt in progress"})))},
			wantStatus: store.Pass, wantReason: "(LUKS2: LUKS2 reencrypt in progress)", wantSeq: 4},
	})
}
