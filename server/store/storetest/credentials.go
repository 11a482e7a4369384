package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// testCredentials: the certificate ledger and revocations. A device's
// enrollment certificate is its accepted one; a renewal's is accepted
// beside it until confirmed, and then alone; a key is certified once;
// revocation keeps its first reason; every change of what authenticates a
// device is listed by CredentialChanges from its time on.
func testCredentials(t *testing.T, open func(*testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	cert := func(serial string, key byte, notAfter time.Time) store.Certificate {
		return store.Certificate{Serial: serial, KeySHA256: []byte{key, 1, 2, 3}, IssuedAt: t0, NotAfter: notAfter}
	}
	enrolled := cert("a1", 0xa1, at(90*24*time.Hour))
	if _, err := s.EnrollDevice(ctx, store.Device{ID: "dev-a", Hostname: "a", EnrolledAt: t0, Cert: &enrolled}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnrollDevice(ctx, store.Device{ID: "dev-legacy", Hostname: "legacy", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	device := func(id string) store.Device {
		t.Helper()
		d, err := s.Device(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	accepts := func(id string, want map[string]bool) {
		t.Helper()
		d := device(id)
		for serial, ok := range want {
			if d.Accepts(serial) != ok {
				t.Errorf("%s accepts %q = %v, want %v (current %q, next %q)", id, serial, !ok, ok, d.CertSerial, d.NextCertSerial)
			}
		}
	}
	changes := func(since time.Time, want ...string) {
		t.Helper()
		ds, err := s.CredentialChanges(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("CredentialChanges(%s) = %v, want %v", since, got, want)
		}
	}

	d := device("dev-a")
	if d.CertSerial != "a1" || !d.CertNotAfter.Equal(enrolled.NotAfter) || d.NextCertSerial != "" {
		t.Fatalf("enrolled device: serial %q until %s, next %q", d.CertSerial, d.CertNotAfter, d.NextCertSerial)
	}
	accepts("dev-a", map[string]bool{"a1": true, "a2": false, "": false})
	expiring := func(before time.Time, want int) {
		t.Helper()
		if n, err := s.CertificatesExpiring(ctx, before); err != nil || n != want {
			t.Errorf("CertificatesExpiring(%s) = %d, %v; want %d", before, n, err, want)
		}
	}
	expiring(enrolled.NotAfter, 0)
	expiring(enrolled.NotAfter.Add(time.Nanosecond), 1) // the legacy device has no recorded certificate
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	accepts("dev-legacy", map[string]bool{"x": true})
	changes(t0)

	// The key ledger: each key once, whoever holds it.
	if c, err := s.CertificateByKey(ctx, enrolled.KeySHA256); err != nil || c.DeviceID != "dev-a" || c.Serial != "a1" {
		t.Fatalf("CertificateByKey(enrolled) = %+v, %v", c, err)
	}
	if _, err := s.CertificateByKey(ctx, []byte{9, 9}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CertificateByKey(unknown) err = %v, want ErrNotFound", err)
	}

	// Renewal: the next certificate is accepted beside the current one.
	renewed := cert("a2", 0xa2, at(150*24*time.Hour))
	if err := s.AddCertificate(ctx, "dev-a", renewed); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCertificate(ctx, "dev-nope", cert("z", 0xff, t0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddCertificate(unknown device) err = %v, want ErrNotFound", err)
	}
	if err := s.AddCertificate(ctx, "dev-legacy", renewed); err == nil {
		t.Error("AddCertificate with a serial already issued succeeded")
	}
	accepts("dev-a", map[string]bool{"a1": true, "a2": true, "a3": false})
	if ok, err := s.ConfirmCertificate(ctx, "dev-a", "a1", at(time.Hour)); err != nil || ok {
		t.Errorf("ConfirmCertificate(current serial) = %v, %v; want false", ok, err)
	}
	if ok, err := s.ConfirmCertificate(ctx, "dev-a", "a2", at(time.Hour)); err != nil || !ok {
		t.Fatalf("ConfirmCertificate(next) = %v, %v", ok, err)
	}
	if ok, err := s.ConfirmCertificate(ctx, "dev-a", "a2", at(2*time.Hour)); err != nil || ok {
		t.Errorf("ConfirmCertificate twice = %v, %v; want false", ok, err)
	}
	d = device("dev-a")
	if d.CertSerial != "a2" || !d.CertNotAfter.Equal(renewed.NotAfter) || d.NextCertSerial != "" || !d.NextCertNotAfter.IsZero() {
		t.Fatalf("after confirm: serial %q until %s, next %q until %s", d.CertSerial, d.CertNotAfter, d.NextCertSerial, d.NextCertNotAfter)
	}
	accepts("dev-a", map[string]bool{"a1": false, "a2": true})
	changes(at(time.Hour), "dev-a")
	changes(at(time.Hour + time.Nanosecond))

	// A legacy device's first renewal makes its certificates counted.
	legacy := cert("l1", 0x11, at(90*24*time.Hour))
	if err := s.AddCertificate(ctx, "dev-legacy", legacy); err != nil {
		t.Fatal(err)
	}
	accepts("dev-legacy", map[string]bool{"old": true, "l1": true})
	if ok, err := s.ConfirmCertificate(ctx, "dev-legacy", "l1", at(3*time.Hour)); err != nil || !ok {
		t.Fatalf("ConfirmCertificate(legacy) = %v, %v", ok, err)
	}
	accepts("dev-legacy", map[string]bool{"old": false, "l1": true})

	// Revocation: the first one holds; nothing authenticates afterwards.
	if err := s.RevokeDevice(ctx, "dev-a", at(5*time.Hour), "laptop stolen", false); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeDevice(ctx, "dev-a", at(6*time.Hour), "again", true); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeDevice(ctx, "dev-nope", at(6*time.Hour), "x", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeDevice(unknown) err = %v, want ErrNotFound", err)
	}
	d = device("dev-a")
	if d.RevokedAt == nil || !d.RevokedAt.Equal(at(5*time.Hour)) || d.RevokeReason != "laptop stolen" || d.Retired {
		t.Fatalf("revoked device: at %v reason %q retired %v", d.RevokedAt, d.RevokeReason, d.Retired)
	}
	accepts("dev-a", map[string]bool{"a2": false})
	expiring(at(1000*24*time.Hour), 1) // the revoked device no longer counts; the legacy one renewed
	if err := s.RevokeDevice(ctx, "dev-legacy", at(7*time.Hour), "disposed", true); err != nil {
		t.Fatal(err)
	}
	if d := device("dev-legacy"); !d.Retired || d.RevokeReason != "disposed" {
		t.Errorf("retired device: retired %v reason %q", d.Retired, d.RevokeReason)
	}
	changes(at(6*time.Hour), "dev-a", "dev-legacy")
	changes(at(7*time.Hour), "dev-legacy")
	// The device list reads the same columns.
	all, err := s.Devices(ctx)
	if err != nil || len(all) != 2 || all[0].RevokedAt == nil || all[1].RevokedAt == nil {
		t.Errorf("Devices = %+v, %v", all, err)
	}
	// A device superseded by a re-enrollment with its TPM is a credential
	// change: the replicas close its streams.
	for i, id := range []string{"dev-t1", "dev-t2"} {
		if _, err := s.EnrollDevice(ctx, store.Device{ID: id, Hostname: id, EnrolledAt: at(time.Duration(8+i) * time.Hour),
			TPM: &store.DeviceTPM{EKHash: []byte("ek-same"), EKTrust: "allowlist", AKPublic: []byte("ak")}}); err != nil {
			t.Fatal(err)
		}
	}
	changes(at(9*time.Hour), "dev-t1")
	if d := device("dev-t1"); d.SupersededBy != "dev-t2" || d.Accepts(d.CertSerial) {
		t.Errorf("superseded device: by %q, still accepted %v", d.SupersededBy, d.Accepts(d.CertSerial))
	}
}

// testCommands: collect-now requests wait until one replica claims each;
// a claimed one is no longer pending and cannot be claimed again.
func testCommands(t *testing.T, open func(*testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if _, err := s.EnrollDevice(ctx, store.Device{ID: "dev-c", Hostname: "c", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	all, err := s.RequestCollection(ctx, store.CollectRequest{DeviceID: "dev-c", RequestedAt: at(time.Minute), RequestedBy: "cli:ann@host"})
	if err != nil {
		t.Fatal(err)
	}
	some, err := s.RequestCollection(ctx, store.CollectRequest{DeviceID: "dev-c", Collectors: []string{"firewall", "osinfo"}, RequestedAt: at(2 * time.Minute), RequestedBy: "web:tok_1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestCollection(ctx, store.CollectRequest{DeviceID: "dev-none", RequestedAt: at(time.Minute), RequestedBy: "x"}); err == nil {
		t.Error("a request for an unknown device was stored")
	}
	pending := func(since time.Time, want ...int64) {
		t.Helper()
		rs, err := s.PendingCollections(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, r := range rs {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("PendingCollections(%s) = %v, want %v", since, got, want)
		}
	}
	pending(t0, all, some)
	pending(at(2*time.Minute), some)
	r, err := s.Collection(ctx, some)
	if err != nil || r.DeviceID != "dev-c" || !slices.Equal(r.Collectors, []string{"firewall", "osinfo"}) || !r.RequestedAt.Equal(at(2*time.Minute)) ||
		r.RequestedBy != "web:tok_1" || r.SentAt != nil {
		t.Fatalf("Collection = %+v, %v", r, err)
	}
	if ok, err := s.MarkCollectionSent(ctx, all, at(3*time.Minute)); err != nil || !ok {
		t.Fatalf("MarkCollectionSent = %v, %v", ok, err)
	}
	if ok, err := s.MarkCollectionSent(ctx, all, at(4*time.Minute)); err != nil || ok {
		t.Errorf("second MarkCollectionSent = %v, %v; want false", ok, err)
	}
	pending(t0, some)
	if r, err := s.Collection(ctx, all); err != nil || r.SentAt == nil || !r.SentAt.Equal(at(3*time.Minute)) || r.Collectors != nil {
		t.Errorf("sent request = %+v, %v", r, err)
	}
	if _, err := s.Collection(ctx, 999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Collection(unknown) err = %v", err)
	}
}

// testSecretList: every secret is listed newest first with its uses
// counted (folded or not); a revoked secret enrolls nothing and keeps its
// first revocation.
func testSecretList(t *testing.T, open func(*testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	for i, id := range []string{"sec_a", "sec_b"} {
		if err := s.CreateEnrollSecret(ctx, store.EnrollSecret{ID: id, Hash: []byte(id), Label: "label " + id, CreatedAt: at(time.Duration(i) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := s.UseEnrollSecret(ctx, []byte("sec_a"), at(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	list := func() []store.EnrollSecret {
		t.Helper()
		l, err := s.EnrollSecrets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := list()
	if len(l) != 2 || l[0].ID != "sec_b" || l[1].ID != "sec_a" || l[1].Uses != 2 || l[1].Label != "label sec_a" || l[0].RevokedAt != nil {
		t.Fatalf("EnrollSecrets = %+v", l)
	}
	if _, err := s.FoldCounts(ctx); err != nil {
		t.Fatal(err)
	}
	if l := list(); l[1].Uses != 2 {
		t.Errorf("uses after folding: %d, want 2", l[1].Uses)
	}
	if err := s.RevokeEnrollSecret(ctx, "sec_a", at(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeEnrollSecret(ctx, "sec_a", at(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeEnrollSecret(ctx, "sec_nope", at(4*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeEnrollSecret(unknown) = %v", err)
	}
	if _, err := s.UseEnrollSecret(ctx, []byte("sec_a"), at(5*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a revoked secret enrolled: %v", err)
	}
	if l := list(); l[1].RevokedAt == nil || !l[1].RevokedAt.Equal(at(3*time.Hour)) {
		t.Errorf("revoked secret listed as %+v", l[1])
	}
}

// testPrune: the retention rule drops the content of observations received
// before the cut-off, except each collector's latest, and keeps every row
// and chain hash; attestations keep their verdicts and lose the raw message
// of all but the newest; a second run finds nothing more.
func testPrune(t *testing.T, open func(*testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if _, err := s.EnrollDevice(ctx, store.Device{ID: "dev-p", Hostname: "p", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // seqs 1-2 at t0+1h ... 7-8 at t0+4h
		var obs []store.Observation
		for j := range 2 {
			seq := uint64(2*i + j + 1)
			obs = append(obs, store.Observation{Seq: seq, Collector: []string{"os", "disk"}[j], CollectedAt: at(time.Duration(i+1) * time.Hour),
				Status: "ok", Error: "e", Payload: json.RawMessage(`{"n":1}`), Sources: json.RawMessage(`[]`)})
		}
		if _, err := s.Ingest(ctx, "dev-p", obs, at(time.Duration(i+1)*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddAttestation(ctx, store.Attestation{DeviceID: "dev-p", ReceivedAt: at(time.Duration(i+1) * time.Hour), Verified: true,
			Verdict: json.RawMessage(`{"verified":true}`), Raw: []byte("raw")}); err != nil {
			t.Fatal(err)
		}
	}
	before := mustHead(t, s, "dev-p")
	res, err := s.Prune(ctx, at(3*time.Hour+time.Minute), at(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Seqs 1-6 were received before the cut-off; none is a collector's
	// latest (7 and 8 are).
	if res.Observations != 6 || res.Attestations != 3 {
		t.Errorf("Prune = %+v, want 6 observations and 3 attestations", res)
	}
	if again, err := s.Prune(ctx, at(3*time.Hour+time.Minute), at(49*time.Hour)); err != nil || again.Observations != 0 || again.Attestations != 0 {
		t.Errorf("second Prune = %+v, %v; want nothing", again, err)
	}
	if c, err := s.Counts(ctx, "dev-p"); err != nil || c.Total != 8 {
		t.Errorf("Counts after pruning = %+v, %v; the rows stay", c, err)
	}
	if h := mustHead(t, s, "dev-p"); h.Index != before.Index || !bytes.Equal(h.Hash, before.Hash) {
		t.Errorf("chain head moved: %+v, was %+v", h, before)
	}
	latest, err := s.Latest(ctx, "dev-p")
	if err != nil || string(latest["os"].Payload) != `{"n":1}` || latest["os"].Seq != 7 {
		t.Errorf("Latest after pruning = %+v, %v; the latest keeps its content", latest, err)
	}
	var pruned []uint64
	for _, o := range exportAll(t, s, "dev-p", t0, at(100*time.Hour)) {
		if o.Pruned != (o.Seq <= 6) || (o.Pruned && (o.Payload != nil || o.Sources != nil || o.Error != "")) || len(o.ChainHash) == 0 {
			t.Errorf("seq %d after pruning: pruned %v, payload %q, error %q, hash %x", o.Seq, o.Pruned, o.Payload, o.Error, o.ChainHash)
		}
		if o.Pruned {
			pruned = append(pruned, o.Seq)
		}
	}
	if len(pruned) != 6 {
		t.Errorf("exported as pruned: %v, want seqs 1-6", pruned)
	}
	if a, err := s.LatestAttestation(ctx, "dev-p", false); err != nil || string(a.Raw) != "raw" {
		t.Errorf("the newest attestation lost its raw message: %+v, %v", a, err)
	}
}
