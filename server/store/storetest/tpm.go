package storetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// --- TPM enrollment and attestation ---

func tpmOf(ek, ak string) *store.DeviceTPM {
	return &store.DeviceTPM{EKHash: []byte(ek), EKTrust: "manufacturer-certificate", EKCertSubject: "CN=ek",
		EKCertIssuer: "CN=maker", EKCertSerial: "01", AKPublic: []byte(ak)}
}

func testTPMEnrollment(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()

	// Peek never counts a use, so a single-use secret survives it.
	mustCreateSecret(t, s, store.EnrollSecret{ID: "s1", Hash: []byte("h1"), CreatedAt: t0, SingleUse: true})
	for range 2 {
		if _, err := s.PeekEnrollSecret(ctx, []byte("h1"), at(time.Second)); err != nil {
			t.Fatalf("PeekEnrollSecret: %v", err)
		}
	}
	if _, err := s.UseEnrollSecret(ctx, []byte("h1"), at(time.Second)); err != nil {
		t.Fatalf("UseEnrollSecret after peeks: %v", err)
	}
	if _, err := s.PeekEnrollSecret(ctx, []byte("h1"), at(time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PeekEnrollSecret of a used single-use secret: %v, want ErrNotFound", err)
	}

	plain := mustEnroll(t, s, device("plain", "m-plain"))
	if plain.TPM != nil {
		t.Error("a read device carries TPM")
	}
	if _, err := s.DeviceTPM(ctx, "plain"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeviceTPM of a device without TPM: %v, want ErrNotFound", err)
	}
	if _, _, err := s.DeviceByEK(ctx, []byte("ek-1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeviceByEK of an unknown EK: %v, want ErrNotFound", err)
	}

	d1 := device("d1", "m-1")
	d1.TPM = tpmOf("ek-1", "ak-1")
	mustEnroll(t, s, d1)
	got, err := s.DeviceTPM(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	want := *tpmOf("ek-1", "ak-1")
	want.EnrolledAt = t0
	if d := diff(got, want); d != "" {
		t.Errorf("DeviceTPM(d1):\n%s", d)
	}

	// A later enrollment with the same EK is linked to d1 even though its
	// machine id differs (a re-imaged machine) and another device has its
	// machine id: the TPM names the machine.
	mustEnroll(t, s, device("decoy", "m-other"))
	d2 := device("d2", "m-other")
	d2.EnrolledAt = at(time.Hour)
	d2.TPM = tpmOf("ek-1", "ak-2")
	stored := mustEnroll(t, s, d2)
	if stored.PreviousID != "d1" || stored.Reenrolled != 1 {
		t.Errorf("same EK: previous %q reenrolled %d, want d1 1", stored.PreviousID, stored.Reenrolled)
	}
	if d, err := s.DeviceByMachineID(ctx, "m-other"); err != nil || d.ID != "d2" {
		t.Errorf("DeviceByMachineID(m-other) = %q, %v; want the newest, d2", d.ID, err)
	}
	for _, m := range []string{"", "m-none"} {
		if _, err := s.DeviceByMachineID(ctx, m); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeviceByMachineID(%q): %v, want ErrNotFound", m, err)
		}
	}
	id, tp, err := s.DeviceByEK(ctx, []byte("ek-1"))
	if err != nil || id != "d2" || !bytes.Equal(tp.AKPublic, []byte("ak-2")) {
		t.Errorf("DeviceByEK = %q %q %v, want the newest device d2 with ak-2", id, tp.AKPublic, err)
	}
	// The same TPM re-enrolled: d1 is superseded by d2, nothing else is.
	if d := mustDevice(t, s, "d1"); d.SupersededBy != "d2" {
		t.Errorf("d1 superseded by %q, want d2", d.SupersededBy)
	}
	for _, id := range []string{"d2", "decoy", "plain"} {
		if d := mustDevice(t, s, id); d.SupersededBy != "" {
			t.Errorf("%s superseded by %q", id, d.SupersededBy)
		}
	}
	if id, _, err := s.MachineTPM(ctx, "m-1"); err != nil || id != "d1" {
		t.Errorf("MachineTPM(m-1) = %q, %v; want d1", id, err)
	}
	if id, _, err := s.MachineTPM(ctx, "m-other"); err != nil || id != "d2" {
		t.Errorf("MachineTPM(m-other) = %q, %v; want d2 (decoy has no TPM)", id, err)
	}
	for _, m := range []string{"", "m-plain", "m-none"} {
		if _, _, err := s.MachineTPM(ctx, m); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("MachineTPM(%q): %v, want ErrNotFound", m, err)
		}
	}

	// Allowances: single use, expiring.
	if err := s.TakeTPMChangeAllowance(ctx, "d2", at(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("allowance never granted: %v, want ErrNotFound", err)
	}
	if err := s.AllowTPMChange(ctx, "d2", at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.TakeTPMChangeAllowance(ctx, "d2", at(time.Hour)); err != nil {
		t.Errorf("granted allowance: %v", err)
	}
	if err := s.TakeTPMChangeAllowance(ctx, "d2", at(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("allowance taken twice: %v, want ErrNotFound", err)
	}
	if err := s.AllowTPMChange(ctx, "d2", at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.TakeTPMChangeAllowance(ctx, "d2", at(3*time.Hour)); !errors.Is(err, store.ErrExpired) {
		t.Errorf("lapsed allowance: %v, want ErrExpired", err)
	}
}

func testSingleUse(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()
	mustEnroll(t, s, device("a", ""))
	mustEnroll(t, s, device("b", ""))

	act := store.Activation{ID: "act-1", SecretHash: []byte("sh"), ExpectedHash: []byte("xh"), EKHash: []byte("ek"),
		AKPublic: []byte("ak"), ExpiresAt: at(time.Minute)}
	if err := s.CreateActivation(ctx, act); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeActivation(ctx, "act-1", t0)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, act); d != "" {
		t.Errorf("TakeActivation:\n%s", d)
	}
	if _, err := s.TakeActivation(ctx, "act-1", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("activation taken twice: %v, want ErrNotFound", err)
	}
	act.ID = "act-2"
	if err := s.CreateActivation(ctx, act); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeActivation(ctx, "act-2", at(time.Minute)); !errors.Is(err, store.ErrExpired) {
		t.Errorf("expired activation: %v, want ErrExpired", err)
	}

	nonce := []byte("0123456789abcdef")
	live := func(now time.Time) bool {
		t.Helper()
		ok, err := s.HasLiveNonce(ctx, "a", now)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if live(t0) {
		t.Error("HasLiveNonce before any nonce")
	}
	if err := s.CreateNonce(ctx, store.Nonce{Value: nonce, DeviceID: "a", ExpiresAt: at(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if !live(t0) || live(at(time.Minute)) {
		t.Error("HasLiveNonce does not follow the nonce's expiry")
	}
	if _, err := s.TakeNonce(ctx, "b", nonce, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another device's nonce: %v, want ErrNotFound", err)
	}
	n, err := s.TakeNonce(ctx, "a", nonce, t0)
	if err != nil || !n.ExpiresAt.Equal(at(time.Minute)) {
		t.Errorf("TakeNonce = %+v, %v", n, err)
	}
	if _, err := s.TakeNonce(ctx, "a", nonce, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replayed nonce: %v, want ErrNotFound", err)
	}
	if err := s.CreateNonce(ctx, store.Nonce{Value: nonce, DeviceID: "a", ExpiresAt: at(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeNonce(ctx, "a", nonce, at(time.Minute)); !errors.Is(err, store.ErrExpired) {
		t.Errorf("expired nonce: %v, want ErrExpired", err)
	}
	if _, err := s.TakeNonce(ctx, "a", nonce, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired nonce is still usable after its refusal: %v", err)
	}

	// PurgeExpired removes only what has expired.
	for i, exp := range []time.Duration{time.Minute, time.Hour} {
		v := []byte{byte(i), 1, 2, 3}
		if err := s.CreateNonce(ctx, store.Nonce{Value: v, DeviceID: "a", ExpiresAt: at(exp)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PurgeExpired(ctx, at(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeNonce(ctx, "a", []byte{0, 1, 2, 3}, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired nonce survived PurgeExpired: %v", err)
	}
	if _, err := s.TakeNonce(ctx, "a", []byte{1, 1, 2, 3}, t0); err != nil {
		t.Errorf("PurgeExpired removed a live nonce: %v", err)
	}
}

func testAttestations(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()
	mustEnroll(t, s, device("a", ""))
	if _, err := s.LatestAttestation(ctx, "a", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LatestAttestation with none: %v, want ErrNotFound", err)
	}
	var last, verified store.Attestation
	for i, ok := range []bool{true, false} {
		a := store.Attestation{DeviceID: "a", ReceivedAt: at(time.Duration(i) * time.Hour), Verified: ok,
			Verdict: []byte(`{"verified":true}`), FirstSeq: 10, LastSeq: uint64(20 + i), Raw: []byte{1, 2, byte(i)}}
		id, err := s.AddAttestation(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		a.ID = id
		last = a
		if ok {
			verified = a
		}
	}
	got, err := s.LatestAttestation(ctx, "a", false)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, last); d != "" {
		t.Errorf("LatestAttestation:\n%s", d)
	}
	// A later failed attestation does not hide the last verified one (the
	// TPM clock is compared with it).
	got, err = s.LatestAttestation(ctx, "a", true)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, verified); d != "" {
		t.Errorf("LatestAttestation(verified only):\n%s", d)
	}
}

func mustCreateSecret(t *testing.T, s store.Store, e store.EnrollSecret) {
	t.Helper()
	if err := s.CreateEnrollSecret(t.Context(), e); err != nil {
		t.Fatalf("CreateEnrollSecret: %v", err)
	}
}
