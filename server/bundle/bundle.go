// Package bundle writes and verifies evidence bundles: a signed, offline
// verifiable export of what the server stored for a period (README: For auditors;
// evidence integrity).
//
// A bundle is an uncompressed POSIX tar file, so an auditor can list and
// unpack it with tar, check it with sha256sum, jq and openssl, and no entry
// depends on Evident to be read. Entries, in order:
//
//	manifest.json              what the bundle holds; signed (see below)
//	manifest.sig               signature over the exact bytes of manifest.json:
//	                           ECDSA P-256 with SHA-256, ASN.1 DER (or Ed25519)
//	pubkey.pem                 the signing public key (PEM "PUBLIC KEY")
//	certs.pem                  optional: the signing key's certificate, then the
//	                           server CA certificate that issued it
//	observations.jsonl.sha256  SHA-256 (hex) of each line of observations.jsonl
//	observations.jsonl         one observation per line, grouped by device,
//	                           unchained ones first, then by chain index
//	intervals.jsonl.sha256     SHA-256 (hex) of each line of intervals.jsonl
//	intervals.jsonl            control state intervals overlapping the period
//	extra/NAME                 caller-supplied files (e.g. the period report)
//
// manifest.json lists every other entry with its size and SHA-256, the period,
// the server (CA fingerprint, signing key fingerprint), the policy, and per
// device the observation and interval counts and its chain segment: the hash
// before the first exported link (prev_hash), the last exported link, and
// the device's chain head when the bundle was made. So the signature covers
// every byte, the per-line hashes locate an altered line, and each device's
// chain (store.ChainHash) can be recomputed from prev_hash, which also
// detects evidence altered in the database before the export.
//
// By hand:
//
//	tar -xf bundle.tar
//	openssl dgst -sha256 -verify pubkey.pem -signature manifest.sig manifest.json
//	jq -r '.files[] | "\(.sha256)  \(.name)"' manifest.json | sha256sum -c
//	openssl x509 -in certs.pem -noout -fingerprint -sha256   # first cert: signer
//
// Times are RFC 3339 UTC with nanoseconds. An observation's payload and
// sources appear as JSON when stored as compact JSON, else base64
// (payload_base64, sources_base64), so the hashed bytes are always exact.
package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// Format and Version identify the bundle layout in manifest.json.
const (
	Format  = "evident-bundle"
	Version = 1
)

// Entry names.
const (
	ManifestFile     = "manifest.json"
	SignatureFile    = "manifest.sig"
	PublicKeyFile    = "pubkey.pem"
	CertificatesFile = "certs.pem"
	ObservationsFile = "observations.jsonl"
	IntervalsFile    = "intervals.jsonl"
	LineHashSuffix   = ".sha256"
	ExtraDir         = "extra/"
)

// Manifest is manifest.json.
type Manifest struct {
	Format        string           `json:"format"`
	Version       int              `json:"version"`
	ChainEncoding string           `json:"chain_encoding"`
	GeneratedAt   time.Time        `json:"generated_at"`
	Period        Period           `json:"period"`
	Server        Server           `json:"server"`
	Policy        string           `json:"policy,omitempty"`
	Devices       []DeviceManifest `json:"devices"`
	Files         []File           `json:"files"`
}

// Period is the export window: observations received and intervals
// overlapping [From, To).
type Period struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Server names the server that signed the bundle.
type Server struct {
	// CAFingerprint is the hex SHA-256 of the CA certificate (the pin in
	// enrollment tokens); empty when the bundle carries no certificates.
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
	// SigningKeySHA256 is the hex SHA-256 of the signing key (PKIX DER).
	SigningKeySHA256 string `json:"signing_key_sha256"`
}

// DeviceManifest summarises one device's evidence in the bundle.
type DeviceManifest struct {
	ID           string `json:"id"`
	Hostname     string `json:"hostname,omitempty"`
	Observations int    `json:"observations"`
	// Unchained counts observations stored before the chain existed.
	Unchained int `json:"unchained,omitempty"`
	// FirstChainIndex..LastChainIndex is the exported chain segment (0, 0
	// when none); PrevHash is the link before it, LastHash its last link.
	FirstChainIndex uint64 `json:"first_chain_index,omitempty"`
	LastChainIndex  uint64 `json:"last_chain_index,omitempty"`
	PrevHash        string `json:"prev_hash,omitempty"`
	LastHash        string `json:"last_hash,omitempty"`
	// Head is the device's chain head when the bundle was made.
	HeadIndex uint64 `json:"head_index"`
	HeadHash  string `json:"head_hash"`
	Intervals int    `json:"intervals"`
}

// File is one entry's size and hash.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// obsLine is one line of observations.jsonl.
type obsLine struct {
	DeviceID      string          `json:"device_id"`
	ChainIndex    uint64          `json:"chain_index,omitempty"`
	Seq           uint64          `json:"seq"`
	Collector     string          `json:"collector"`
	CollectedAt   time.Time       `json:"collected_at"`
	ReceivedAt    time.Time       `json:"received_at"`
	ClockSkew     bool            `json:"clock_skew"`
	Status        string          `json:"status"`
	Error         string          `json:"error,omitempty"`
	ParserVersion int             `json:"parser_version"`
	DurationMS    int             `json:"duration_ms"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadB64    []byte          `json:"payload_base64,omitempty"`
	Sources       json.RawMessage `json:"sources,omitempty"`
	SourcesB64    []byte          `json:"sources_base64,omitempty"`
	ChainHash     string          `json:"chain_hash,omitempty"`
	// Pruned: the server's retention rule dropped the content; the
	// record asserts only its chain index, seq and hash, and links the
	// chain by the hash.
	Pruned bool `json:"pruned,omitempty"`
}

func (l *obsLine) observation() store.Observation {
	o := store.Observation{Seq: l.Seq, Collector: l.Collector, CollectedAt: l.CollectedAt, ReceivedAt: l.ReceivedAt,
		ClockSkew: l.ClockSkew, Status: l.Status, Error: l.Error, ParserVersion: l.ParserVersion, DurationMS: l.DurationMS,
		Payload: l.Payload, Sources: l.Sources}
	if l.PayloadB64 != nil {
		o.Payload = l.PayloadB64
	}
	if l.SourcesB64 != nil {
		o.Sources = l.SourcesB64
	}
	return o
}

// intervalLine is one line of intervals.jsonl.
type intervalLine struct {
	DeviceID    string          `json:"device_id"`
	ControlID   string          `json:"control_id"`
	Status      string          `json:"status"`
	Reason      string          `json:"reason,omitempty"`
	EvidenceSeq uint64          `json:"evidence_seq,omitempty"`
	Evidence    json.RawMessage `json:"evidence,omitempty"`
	EvidenceB64 []byte          `json:"evidence_base64,omitempty"`
	Since       time.Time       `json:"since"`
	Until       *time.Time      `json:"until"`
	EvaluatedAt time.Time       `json:"evaluated_at"`
	Evaluations int             `json:"evaluations"`
}

// exactJSON splits b into embeddable JSON (when the encoder would write it
// back byte for byte) or base64.
func exactJSON(b []byte) (json.RawMessage, []byte) {
	if len(b) == 0 {
		return nil, nil
	}
	var c bytes.Buffer
	if string(b) != "null" && json.Valid(b) && json.Compact(&c, b) == nil && bytes.Equal(c.Bytes(), b) {
		return b, nil
	}
	return nil, b
}

// Source is what Write reads; store.Store satisfies it.
type Source interface {
	store.Chain
	Devices(ctx context.Context) ([]store.Device, error)
	StateHistory(ctx context.Context, deviceID string) ([]store.ControlState, error)
}

// Options shape a bundle.
type Options struct {
	// From and To bound the period; zero From is the beginning of time,
	// zero To is Now.
	From, To time.Time
	// Devices limits the bundle to these device ids; empty means all.
	Devices []string
	// Policy names the control pack the intervals were scored against.
	Policy string
	// Now is the generation time; zero means time.Now().
	Now time.Time
	// Certificates are the signing key's certificate then the CA's
	// (pki.CA.EvidenceSigner); optional.
	Certificates []*x509.Certificate
	// Extra files, written as extra/NAME (NAME: letters, digits, ., _, -).
	Extra map[string][]byte
	// TempDir stages the data files while their hashes are computed;
	// empty means os.TempDir().
	TempDir string
}

// staged is a data file being written to a temp file, hashed as it goes,
// with its per-line hash sidecar.
type staged struct {
	name  string
	f     *os.File
	w     *bufio.Writer
	h     hash.Hash
	n     int64
	lines bytes.Buffer
	enc   *json.Encoder
	line  bytes.Buffer
}

func newStaged(dir, name string) (*staged, error) {
	f, err := os.CreateTemp(dir, "evident-bundle-*")
	if err != nil {
		return nil, err
	}
	s := &staged{name: name, f: f, w: bufio.NewWriter(f), h: sha256.New()}
	s.enc = json.NewEncoder(&s.line)
	s.enc.SetEscapeHTML(false)
	return s, nil
}

func (s *staged) writeLine(v any) error {
	s.line.Reset()
	if err := s.enc.Encode(v); err != nil { // Encode appends '\n'
		return err
	}
	b := s.line.Bytes()
	sum := sha256.Sum256(b[:len(b)-1])
	s.lines.WriteString(hex.EncodeToString(sum[:]) + "\n")
	s.h.Write(b)
	s.n += int64(len(b))
	_, err := s.w.Write(b)
	return err
}

func (s *staged) close() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// Write writes a bundle of src's evidence to w, signed by signer (ECDSA or
// Ed25519), and returns its manifest.
func Write(ctx context.Context, w io.Writer, src Source, signer crypto.Signer, opts Options) (*Manifest, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.To.IsZero() {
		opts.To = opts.Now
	}
	if opts.From.IsZero() {
		opts.From = time.Unix(0, 0)
	}
	if !opts.From.Before(opts.To) {
		return nil, fmt.Errorf("empty period: from %s is not before to %s", opts.From.Format(time.RFC3339), opts.To.Format(time.RFC3339))
	}
	for name := range opts.Extra {
		if !validExtraName(name) {
			return nil, fmt.Errorf("extra file name %q: use letters, digits, '.', '_' and '-' only", name)
		}
	}
	pubDER, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	keySum := sha256.Sum256(pubDER)
	m := &Manifest{
		Format: Format, Version: Version, ChainEncoding: store.ChainVersion,
		GeneratedAt: opts.Now.UTC(), Period: Period{From: opts.From.UTC(), To: opts.To.UTC()},
		Server: Server{SigningKeySHA256: hex.EncodeToString(keySum[:])}, Policy: opts.Policy,
		Devices: []DeviceManifest{}, Files: []File{},
	}
	if n := len(opts.Certificates); n > 0 {
		ca := sha256.Sum256(opts.Certificates[n-1].Raw)
		m.Server.CAFingerprint = hex.EncodeToString(ca[:])
	}

	devices, err := src.Devices(ctx)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	if len(opts.Devices) > 0 {
		var sel []store.Device
		for _, id := range opts.Devices {
			i := slices.IndexFunc(devices, func(d store.Device) bool { return d.ID == id })
			if i < 0 {
				return nil, fmt.Errorf("no device %q", id)
			}
			sel = append(sel, devices[i])
		}
		devices = sel
	}
	slices.SortFunc(devices, func(a, b store.Device) int { return strings.Compare(a.ID, b.ID) })

	obsF, err := newStaged(opts.TempDir, ObservationsFile)
	if err != nil {
		return nil, err
	}
	defer obsF.close()
	intF, err := newStaged(opts.TempDir, IntervalsFile)
	if err != nil {
		return nil, err
	}
	defer intF.close()

	for _, d := range devices {
		dm := DeviceManifest{ID: d.ID, Hostname: d.Hostname}
		head, err := src.ChainHead(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		dm.HeadIndex, dm.HeadHash = head.Index, hex.EncodeToString(head.Hash)
		err = src.ObservationsForExport(ctx, d.ID, opts.From, opts.To, func(c store.ChainedObservation) error {
			l := obsLine{DeviceID: d.ID, ChainIndex: c.ChainIndex, Seq: c.Seq, Collector: c.Collector,
				CollectedAt: c.CollectedAt.UTC(), ReceivedAt: c.ReceivedAt.UTC(), ClockSkew: c.ClockSkew, Status: c.Status,
				Error: c.Error, ParserVersion: c.ParserVersion, DurationMS: c.DurationMS, Pruned: c.Pruned}
			l.Payload, l.PayloadB64 = exactJSON(c.Payload)
			l.Sources, l.SourcesB64 = exactJSON(c.Sources)
			if c.Pruned {
				// Its hash can no longer be recomputed, so nothing of it
				// but its chain position and hash is asserted: what is
				// left in the database is not evidence.
				l = obsLine{DeviceID: d.ID, ChainIndex: c.ChainIndex, Seq: c.Seq, Pruned: true}
			}
			dm.Observations++
			if c.ChainIndex == 0 {
				dm.Unchained++
			} else {
				if dm.FirstChainIndex == 0 {
					dm.FirstChainIndex, dm.PrevHash = c.ChainIndex, hex.EncodeToString(c.PrevHash)
				}
				dm.LastChainIndex, dm.LastHash = c.ChainIndex, hex.EncodeToString(c.ChainHash)
				l.ChainHash = hex.EncodeToString(c.ChainHash)
			}
			return obsF.writeLine(l)
		})
		if err != nil {
			return nil, fmt.Errorf("export observations of %s: %w", d.ID, err)
		}
		hist, err := src.StateHistory(ctx, d.ID)
		if err != nil {
			return nil, fmt.Errorf("intervals of %s: %w", d.ID, err)
		}
		for _, st := range hist {
			if !st.Since.Before(opts.To) || (st.Until != nil && !st.Until.After(opts.From)) {
				continue
			}
			l := intervalLine{DeviceID: d.ID, ControlID: st.ControlID, Status: st.Status, Reason: st.Reason,
				EvidenceSeq: st.EvidenceSeq, Since: st.Since.UTC(), Until: st.Until, EvaluatedAt: st.EvaluatedAt.UTC(),
				Evaluations: st.Evaluations}
			l.Evidence, l.EvidenceB64 = exactJSON(st.Evidence)
			if err := intF.writeLine(l); err != nil {
				return nil, err
			}
			dm.Intervals++
		}
		m.Devices = append(m.Devices, dm)
	}

	// Small files in memory, data files from their temp files.
	type entry struct {
		name string
		data []byte
		st   *staged
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	entries := []entry{{name: PublicKeyFile, data: pubPEM}}
	if len(opts.Certificates) > 0 {
		var b bytes.Buffer
		for _, c := range opts.Certificates {
			pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		entries = append(entries, entry{name: CertificatesFile, data: b.Bytes()})
	}
	for _, s := range []*staged{obsF, intF} {
		if err := s.w.Flush(); err != nil {
			return nil, err
		}
		entries = append(entries, entry{name: s.name + LineHashSuffix, data: s.lines.Bytes()}, entry{name: s.name, st: s})
	}
	extras := make([]string, 0, len(opts.Extra))
	for name := range opts.Extra {
		extras = append(extras, name)
	}
	slices.Sort(extras)
	for _, name := range extras {
		entries = append(entries, entry{name: ExtraDir + name, data: opts.Extra[name]})
	}
	for _, e := range entries {
		if e.st != nil {
			m.Files = append(m.Files, File{Name: e.name, Size: e.st.n, SHA256: hex.EncodeToString(e.st.h.Sum(nil))})
			continue
		}
		sum := sha256.Sum256(e.data)
		m.Files = append(m.Files, File{Name: e.name, Size: int64(len(e.data)), SHA256: hex.EncodeToString(sum[:])})
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	manifest = append(manifest, '\n')
	sig, err := sign(signer, manifest)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}

	tw := tar.NewWriter(w)
	hdr := func(name string, size int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
			ModTime: m.GeneratedAt.Truncate(time.Second), Format: tar.FormatPAX})
	}
	for _, e := range append([]entry{{name: ManifestFile, data: manifest}, {name: SignatureFile, data: sig}}, entries...) {
		if e.st == nil {
			if err := hdr(e.name, int64(len(e.data))); err != nil {
				return nil, err
			}
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
			continue
		}
		if err := hdr(e.name, e.st.n); err != nil {
			return nil, err
		}
		if _, err := e.st.f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		if n, err := io.Copy(tw, e.st.f); err != nil || n != e.st.n {
			return nil, fmt.Errorf("copy %s: %d of %d bytes: %v", e.name, n, e.st.n, err)
		}
	}
	return m, tw.Close()
}

func sign(signer crypto.Signer, msg []byte) ([]byte, error) {
	if _, ok := signer.Public().(ed25519.PublicKey); ok {
		return signer.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	sum := sha256.Sum256(msg)
	return signer.Sign(rand.Reader, sum[:], crypto.SHA256)
}

func validExtraName(name string) bool {
	if name == "" || len(name) > 100 || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
