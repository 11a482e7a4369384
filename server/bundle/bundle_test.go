package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/bundle"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)

type fixture struct {
	st     *sqlite.Store
	dbPath string
	key    crypto.Signer
	certs  []*x509.Certificate
	caFP   string
}

// newFixture stores two devices' real-looking evidence and states.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	key, cert, err := ca.EvidenceSigner(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dbPath: filepath.Join(dir, "evident.db"), key: key, certs: []*x509.Certificate{cert, ca.Cert}, caFP: ca.Fingerprint()}
	f.st, err = sqlite.Open(f.dbPath, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	ctx := context.Background()
	for _, id := range []string{"dev-a", "dev-b"} {
		if _, err := f.st.EnrollDevice(ctx, store.Device{ID: id, Hostname: "host-" + id, MachineID: "m-" + id, EnrolledAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	ingest := func(id string, from, to uint64, rec time.Time) {
		var obs []store.Observation
		for s := from; s <= to; s++ {
			col := []string{"os", "disk", "firewall"}[s%3]
			obs = append(obs, store.Observation{Seq: s, Collector: col, CollectedAt: rec.Add(-time.Duration(s) * time.Second),
				Status: "ok", ParserVersion: 2, DurationMS: int(s), ClockSkew: s == 4,
				Payload: json.RawMessage(fmt.Sprintf(`{"enabled":true,"name":"%s <&> %d"}`, col, s)),
				Sources: json.RawMessage(`["/etc/os-release"]`)})
		}
		// A non-JSON payload and a pretty-printed one travel as base64.
		if from == 1 {
			obs[0].Payload = []byte("not json \xff")
			obs[1].Payload = json.RawMessage("{\n  \"pretty\": true\n}")
		}
		if _, err := f.st.Ingest(ctx, id, obs, rec); err != nil {
			t.Fatal(err)
		}
	}
	ingest("dev-a", 1, 6, t0.Add(time.Hour))
	ingest("dev-a", 9, 12, t0.Add(2*time.Hour))
	ingest("dev-a", 7, 8, t0.Add(3*time.Hour)) // a resend: out of order
	ingest("dev-b", 1, 5, t0.Add(2*time.Hour))
	for i, status := range []string{store.Pass, store.Fail, store.Pass} {
		err := states.Record(ctx, f.st, "dev-a", []store.ControlState{
			{ControlID: "DC-FW-01", Status: status, Reason: "firewall " + status, EvidenceSeq: uint64(i + 1), Evidence: json.RawMessage(`{"x":1}`)},
			{ControlID: "DC-DISK-01", Status: store.Pass, Reason: "encrypted"},
		}, nil, t0.Add(time.Duration(i+1)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := states.Record(ctx, f.st, "dev-b", []store.ControlState{{ControlID: "DC-FW-01", Status: store.Unknown}}, nil, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) write(t testing.TB, opts bundle.Options) []byte {
	t.Helper()
	if opts.Now.IsZero() {
		opts.Now = t0.Add(24 * time.Hour)
	}
	if opts.Certificates == nil {
		opts.Certificates = f.certs
	}
	var b bytes.Buffer
	if _, err := bundle.Write(context.Background(), &b, f.st, f.key, opts); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return b.Bytes()
}

func verify(b []byte, opts bundle.VerifyOptions) (*bundle.Result, error) {
	return bundle.Verify(bytes.NewReader(b), int64(len(b)), opts)
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	b := f.write(t, bundle.Options{Policy: "soc2-device-2022", Extra: map[string][]byte{"report.json": []byte(`{"ok":true}`)}})
	res, err := verify(b, bundle.VerifyOptions{PublicKey: f.key.Public(), CAFingerprint: strings.ToUpper(f.caFP)})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Observations != 17 || res.Chained != 17 || res.Unchained != 0 || res.Intervals != 5 {
		t.Errorf("Result = %d obs (%d chained, %d unchained), %d intervals; want 17 (17, 0), 5", res.Observations, res.Chained, res.Unchained, res.Intervals)
	}
	if res.CAFingerprint != f.caFP || res.Manifest.Policy != "soc2-device-2022" {
		t.Errorf("CAFingerprint = %s, policy %q; want %s, soc2-device-2022", res.CAFingerprint, res.Manifest.Policy, f.caFP)
	}
	for _, want := range []string{"bundle verified: 2 devices, 17 observations", "issued by CA sha256:" + f.caFP} {
		if !strings.Contains(res.Summary(), want) {
			t.Errorf("Summary() = %q, want it to contain %q", res.Summary(), want)
		}
	}
	// The manifest's chain segment is the store's chain.
	head, _ := f.st.ChainHead(context.Background(), "dev-a")
	d := res.Manifest.Devices[0]
	if d.ID != "dev-a" || d.FirstChainIndex != 1 || d.LastChainIndex != 12 || d.HeadIndex != 12 ||
		d.LastHash != hex.EncodeToString(head.Hash) || d.PrevHash != hex.EncodeToString(store.GenesisHash) {
		t.Errorf("manifest device = %+v, want dev-a chain 1..12 ending at the head %x", d, head.Hash)
	}
	// An auditor's tools: every listed file's SHA-256 matches.
	ents := readTar(t, b)
	if ents[0].name != bundle.ManifestFile || ents[1].name != bundle.SignatureFile {
		t.Errorf("first entries = %s, %s; want manifest.json, manifest.sig", ents[0].name, ents[1].name)
	}
	for _, lf := range res.Manifest.Files {
		sum := sha256.Sum256(entry(t, ents, lf.Name))
		if hex.EncodeToString(sum[:]) != lf.SHA256 {
			t.Errorf("%s: sha256 differs from the manifest", lf.Name)
		}
	}
	if got := string(entry(t, ents, "extra/report.json")); got != `{"ok":true}` {
		t.Errorf("extra/report.json = %q", got)
	}
}

func TestPeriodExcerpt(t *testing.T) {
	f := newFixture(t)
	// Only what was received in [1h30m, 2h30m): dev-a seqs 9..12 (chain 7..10)
	// and dev-b 1..5; the excerpt verifies from the carried prev hash.
	b := f.write(t, bundle.Options{From: t0.Add(90 * time.Minute), To: t0.Add(150 * time.Minute)})
	res, err := verify(b, bundle.VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	d := res.Manifest.Devices[0]
	if res.Observations != 9 || d.FirstChainIndex != 7 || d.LastChainIndex != 10 || d.HeadIndex != 12 {
		t.Errorf("excerpt: %d observations, dev-a chain %d..%d head %d; want 9, 7..10 head 12", res.Observations, d.FirstChainIndex, d.LastChainIndex, d.HeadIndex)
	}
	// Intervals overlapping the window only: DC-FW-01 pass [1h,2h) and
	// fail [2h,3h), DC-DISK-01 open since 1h; dev-b's open one.
	if res.Intervals != 4 {
		t.Errorf("excerpt intervals = %d, want 4", res.Intervals)
	}
	// One device only.
	b = f.write(t, bundle.Options{Devices: []string{"dev-b"}})
	if res, err := verify(b, bundle.VerifyOptions{}); err != nil || len(res.Manifest.Devices) != 1 || res.Observations != 5 {
		t.Errorf("--device dev-b: %v, %+v", err, res)
	}
	if _, err := bundle.Write(context.Background(), io.Discard, f.st, f.key, bundle.Options{Devices: []string{"nope"}}); err == nil {
		t.Error("Write with an unknown device succeeded")
	}
}

func TestUnchainedRows(t *testing.T) {
	f := newFixture(t)
	// Rows as a database from before schema 3 holds them: no chain fields.
	db, err := sql.Open("sqlite", "file:"+f.dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for seq := 100; seq < 103; seq++ {
		if _, err := db.Exec(`INSERT INTO observations (device_id, seq, collector, collected_at, received_at, status, payload)
			VALUES ('dev-b', ?, 'os', ?, ?, 'ok', '{}')`, seq, t0.UnixNano(), t0.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	res, err := verify(f.write(t, bundle.Options{}), bundle.VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Unchained != 3 || res.Chained != 17 || !strings.Contains(res.Summary(), "3 observations were stored before the hash chain") {
		t.Errorf("unchained = %d, chained %d, summary %q; want 3, 17 and a note", res.Unchained, res.Chained, res.Summary())
	}
}

func TestDatabaseTamperedBeforeExport(t *testing.T) {
	f := newFixture(t)
	db, err := sql.Open("sqlite", "file:"+f.dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE observations SET payload = '{"enabled":false}' WHERE device_id = 'dev-a' AND seq = 10`); err != nil {
		t.Fatal(err)
	}
	_, err = verify(f.write(t, bundle.Options{}), bundle.VerifyOptions{})
	want := "device dev-a: observation seq 10 (chain index 8): chain hash mismatch — record altered"
	if err == nil || err.Error() != want {
		t.Errorf("Verify after a database edit = %v, want %q", err, want)
	}
}

type tarEnt struct {
	name string
	data []byte
}

func readTar(t testing.TB, b []byte) []tarEnt {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []tarEnt
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		d, _ := io.ReadAll(tr)
		out = append(out, tarEnt{h.Name, d})
	}
}

func writeTar(t testing.TB, ents []tarEnt) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Size: int64(len(e.data)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	return b.Bytes()
}

func entry(t testing.TB, ents []tarEnt, name string) []byte {
	t.Helper()
	for _, e := range ents {
		if e.name == name {
			return e.data
		}
	}
	t.Fatalf("no entry %s", name)
	return nil
}

func setEntry(ents []tarEnt, name string, data []byte) []tarEnt {
	for i := range ents {
		if ents[i].name == name {
			ents[i].data = data
		}
	}
	return ents
}

// lines edits a .jsonl entry line by line (1-based in messages).
func editLines(t testing.TB, ents []tarEnt, name string, fn func([]string) []string) []tarEnt {
	t.Helper()
	ls := strings.SplitAfter(string(entry(t, ents, name)), "\n")
	ls = ls[:len(ls)-1] // after the final newline
	return setEntry(ents, name, []byte(strings.Join(fn(ls), "")))
}

// resign is an attacker with their own key: every hash recomputed, the
// manifest signed, pubkey.pem replaced.
func resign(t testing.TB, ents []tarEnt, key *ecdsa.PrivateKey) []tarEnt {
	t.Helper()
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	ents = setEntry(ents, bundle.PublicKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	var m bundle.Manifest
	if err := json.Unmarshal(entry(t, ents, bundle.ManifestFile), &m); err != nil {
		t.Fatal(err)
	}
	ks := sha256.Sum256(der)
	m.Server.SigningKeySHA256 = hex.EncodeToString(ks[:])
	var files []bundle.File
	for _, lf := range m.Files {
		for _, e := range ents {
			if e.name == lf.Name {
				s := sha256.Sum256(e.data)
				files = append(files, bundle.File{Name: lf.Name, Size: int64(len(e.data)), SHA256: hex.EncodeToString(s[:])})
			}
		}
	}
	m.Files = files
	mb, _ := json.Marshal(m)
	sum := sha256.Sum256(mb)
	sig, _ := ecdsa.SignASN1(rand.Reader, key, sum[:])
	return setEntry(setEntry(ents, bundle.ManifestFile, mb), bundle.SignatureFile, sig)
}

func TestTampering(t *testing.T) {
	f := newFixture(t)
	good := f.write(t, bundle.Options{Extra: map[string][]byte{"report.json": []byte(`{"compliant":0.97}`)}})
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherDER})

	tests := []struct {
		name   string
		tamper func([]tarEnt) []tarEnt
		opts   bundle.VerifyOptions
		want   string
	}{
		{"payload byte", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.ObservationsFile, func(ls []string) []string {
				ls[4] = strings.Replace(ls[4], `<&>`, `<&<`, 1) // dev-a seq 5
				return ls
			})
		}, bundle.VerifyOptions{}, "device dev-a: observation seq 5 (chain index 5): chain hash mismatch — record altered"},
		{"base64 payload byte", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.ObservationsFile, func(ls []string) []string {
				ls[0] = strings.Replace(ls[0], `"payload_base64":"b`, `"payload_base64":"c`, 1)
				return ls
			})
		}, bundle.VerifyOptions{}, "device dev-a: observation seq 1 (chain index 1): chain hash mismatch — record altered"},
		{"received time", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.ObservationsFile, func(ls []string) []string {
				ls[13] = strings.Replace(ls[13], `T11:00:00.123456789Z`, `T11:00:00.123456788Z`, 1) // dev-b seq 2
				return ls
			})
		}, bundle.VerifyOptions{}, "device dev-b: observation seq 2 (chain index 2): chain hash mismatch — record altered"},
		{"whitespace only", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.ObservationsFile, func(ls []string) []string {
				ls[6] = strings.Replace(ls[6], `,"seq"`, ` ,"seq"`, 1)
				return ls
			})
		}, bundle.VerifyOptions{}, "observations.jsonl line 7 altered: file hash mismatch"},
		{"interval line", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.IntervalsFile, func(ls []string) []string {
				ls[2] = strings.Replace(ls[2], `"status":"fail"`, `"status":"pass"`, 1)
				return ls
			})
		}, bundle.VerifyOptions{}, "intervals.jsonl line 3 altered: file hash mismatch"},
		{"interval deleted", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.IntervalsFile, func(ls []string) []string { return append(ls[:2], ls[3:]...) })
		}, bundle.VerifyOptions{}, "intervals.jsonl line 3 altered: file hash mismatch"},
		{"interval appended", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.IntervalsFile, func(ls []string) []string { return append(ls, ls[0]) })
		}, bundle.VerifyOptions{}, "intervals.jsonl line 6 added: file hash mismatch"},
		{"extra file", func(e []tarEnt) []tarEnt {
			return setEntry(e, "extra/report.json", []byte(`{"compliant":1.00}`))
		}, bundle.VerifyOptions{}, "extra/report.json altered: file hash mismatch"},
		{"signature byte", func(e []tarEnt) []tarEnt {
			s := bytes.Clone(entry(t, e, bundle.SignatureFile))
			s[10] ^= 1
			return setEntry(e, bundle.SignatureFile, s)
		}, bundle.VerifyOptions{}, "signature invalid"},
		{"manifest byte", func(e []tarEnt) []tarEnt {
			m := bytes.Replace(entry(t, e, bundle.ManifestFile), []byte(`"observations": 12`), []byte(`"observations": 11`), 1)
			return setEntry(e, bundle.ManifestFile, m)
		}, bundle.VerifyOptions{}, "signature invalid"},
		{"record deleted", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.ObservationsFile, func(ls []string) []string { return append(ls[:2], ls[3:]...) })
		}, bundle.VerifyOptions{}, "device dev-a: observation seq 4 has chain index 4, expected 3 — observations deleted or reordered"},
		{"last record deleted", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.ObservationsFile, func(ls []string) []string { return append(ls[:11], ls[12:]...) })
		}, bundle.VerifyOptions{}, "device dev-a: 11 observations (0 unchained) in observations.jsonl, the manifest says 12 (0) — observations deleted or added"},
		{"records reordered", func(e []tarEnt) []tarEnt {
			return editLines(t, e, bundle.ObservationsFile, func(ls []string) []string {
				ls[2], ls[3] = ls[3], ls[2]
				return ls
			})
		}, bundle.VerifyOptions{}, "device dev-a: observation seq 4 has chain index 4, expected 3 — observations deleted or reordered"},
		{"public key swapped", func(e []tarEnt) []tarEnt {
			return setEntry(e, bundle.PublicKeyFile, otherPEM)
		}, bundle.VerifyOptions{}, "signature invalid"},
		{"re-signed with another key", func(e []tarEnt) []tarEnt {
			return resign(t, e, other)
		}, bundle.VerifyOptions{}, "certs.pem: the signing certificate is not for the key in pubkey.pem"},
		{"re-signed, certificates dropped, key pinned", func(e []tarEnt) []tarEnt {
			var out []tarEnt
			for _, x := range e {
				if x.name != bundle.CertificatesFile {
					out = append(out, x)
				}
			}
			return resign(t, out, other)
		}, bundle.VerifyOptions{PublicKey: f.key.Public()}, "is not the pinned public key"},
		{"re-signed, certificates dropped, CA pinned", func(e []tarEnt) []tarEnt {
			var out []tarEnt
			for _, x := range e {
				if x.name != bundle.CertificatesFile {
					out = append(out, x)
				}
			}
			return resign(t, out, other)
		}, bundle.VerifyOptions{CAFingerprint: f.caFP}, "a CA fingerprint is pinned but the bundle carries no certs.pem"},
		{"wrong CA pinned", func(e []tarEnt) []tarEnt { return e },
			bundle.VerifyOptions{CAFingerprint: strings.Repeat("ab", 32)}, "not the pinned " + strings.Repeat("ab", 32)},
		{"file added", func(e []tarEnt) []tarEnt {
			return append(e, tarEnt{"extra/more.txt", []byte("hi")})
		}, bundle.VerifyOptions{}, "extra/more.txt is not listed in the manifest: added after signing"},
		{"file removed", func(e []tarEnt) []tarEnt {
			return e[:len(e)-1]
		}, bundle.VerifyOptions{}, "extra/report.json missing (listed in the manifest)"},
		{"not a tar", func([]tarEnt) []tarEnt { return nil }, bundle.VerifyOptions{}, "manifest.json missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := writeTar(t, tc.tamper(readTar(t, good)))
			_, err := verify(b, tc.opts)
			if err == nil {
				t.Fatalf("Verify accepted a bundle with %s", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
	// The untouched bundle, rewritten by the same helpers, still verifies.
	if _, err := verify(writeTar(t, readTar(t, good)), bundle.VerifyOptions{}); err != nil {
		t.Errorf("rewritten untouched bundle: %v", err)
	}
}

func TestVerifyBounds(t *testing.T) {
	// A line longer than MaxLine is refused without reading it whole into
	// a structure; a huge manifest is refused by size.
	long := []tarEnt{{bundle.ManifestFile, bytes.Repeat([]byte("x"), bundle.MaxManifestSize+1)}}
	if _, err := verify(writeTar(t, long), bundle.VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized manifest: %v", err)
	}
	if _, err := verify([]byte("garbage that is not a tar file at all"), bundle.VerifyOptions{}); err == nil {
		t.Error("garbage verified")
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	good := fx.write(f, bundle.Options{})
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := verify(b, bundle.VerifyOptions{})
		if err == nil && res == nil {
			t.Fatal("nil result without an error")
		}
	})
}

// TestPrunedRecords: observations the retention rule pruned travel as
// hash-only records that still link each device's chain, so a bundle over
// them verifies and says how many were pruned; altering a pruned record's
// hash, or giving it content, is caught.
func TestPrunedRecords(t *testing.T) {
	f := newFixture(t)
	// Before 02:30: dev-a seqs 1-6 (01:00; 7-8 came at 03:00, and the run
	// stops there), dev-b seqs 1-5 (02:00) but the newest of each
	// collector (3, 4, 5) is kept whole.
	res, err := f.st.Prune(context.Background(), t0.Add(150*time.Minute), t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res.Observations != 8 {
		t.Fatalf("pruned %d observations, want 8", res.Observations)
	}
	if again, err := f.st.Prune(context.Background(), t0.Add(150*time.Minute), t0.Add(25*time.Hour)); err != nil || again.Observations != 0 {
		t.Errorf("a second prune: %+v, %v; want nothing more", again, err)
	}
	good := f.write(t, bundle.Options{})
	r, err := verify(good, bundle.VerifyOptions{PublicKey: f.key.Public()})
	if err != nil {
		t.Fatalf("a bundle over pruned records: %v", err)
	}
	if r.Pruned != 8 || r.Chained != 17 || !strings.Contains(r.Summary(), "8 observations were pruned by the retention rule") {
		t.Errorf("pruned %d, chained %d, summary %q", r.Pruned, r.Chained, r.Summary())
	}
	for _, tc := range []struct {
		name string
		edit func(string) string
		line int
		want string
	}{
		{"a pruned record's hash", func(l string) string {
			i := strings.Index(l, `"chain_hash":"`) + len(`"chain_hash":"`)
			flip := map[byte]byte{'0': '1'}[l[i]]
			if flip == 0 {
				flip = '0'
			}
			return l[:i] + string(flip) + l[i+1:]
		}, 2, "altered"},
		{"a pruned record's hash cut short", func(l string) string {
			return strings.Replace(l, `"chain_hash":"`, `"chain_hash":"zz`, 1)
		}, 2, "pruned record without a valid chain hash"},
		{"content given to a pruned record", func(l string) string {
			return strings.Replace(l, `"pruned":true`, `"pruned":true,"payload":{"enabled":false}`, 1)
		}, 2, "marked pruned but carries content"},
		{"a status given to a pruned record", func(l string) string {
			return strings.Replace(l, `"status":""`, `"status":"ok"`, 1)
		}, 2, "marked pruned but carries content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := writeTar(t, editLines(t, readTar(t, good), bundle.ObservationsFile, func(ls []string) []string {
				if !strings.Contains(ls[tc.line], `"pruned":true`) {
					t.Fatalf("line %d is not a pruned record: %s", tc.line, ls[tc.line])
				}
				ls[tc.line] = tc.edit(ls[tc.line])
				return ls
			}))
			if _, err := verify(b, bundle.VerifyOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
