// Package attest verifies TPM 2.0 quotes (TPM2_Quote) against an attestation
// key (AK), a caller-chosen nonce and the PCR values the device reports.
//
// VerifyQuote is a pure function: it checks, in order, that the message is a
// TPM-generated TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE, that the TPMT_SIGNATURE
// over it verifies with the AK, that extraData equals the nonce (which must be
// at least MinNonceLen bytes: an empty nonce would make any old quote
// replayable), that the quoted PCR selection is the one required, and that the
// quoted PCR digest equals the digest recomputed over the reported PCR values
// in selection order with the hash of the signature scheme. Every failure
// wraps one of the Err* sentinels so callers can tell the reasons apart with
// errors.Is; a failing quote is evidence of failure, not an error to retry.
//
// The parsers read the files tpm2-tools 5.x writes by default:
// ParseAKPublic reads `tpm2_createak -f pem -u ak.pem`, the message and the
// signature are `tpm2_quote -m quote.msg -s quote.sig` (TPM wire format), and
// ParsePCRFile reads `tpm2_quote -o quote.pcrs` (the "serialized" format that
// `tpm2_checkquote -f` reads; see ParsePCRFile for its layout).
//
// The server's side of TPM attestation (README: TPM attestation) builds on VerifyQuote:
//
//   - Enrollment: LoadEKPolicy reads the trusted EK manufacturer roots and an
//     allowlist of EK hashes into an EKPolicy. CheckTPMIdentity checks a
//     device's TPMIdentity against it: the EK certificate (parsed with
//     go-attestation, which copes with the NV index's header and padding;
//     the critical TCG subjectAltName that crypto/x509 cannot interpret is
//     accepted) must be for the EK and chain to a root, else the EK must be
//     allowlisted; the AK must be a restricted, fixedTPM, fixedParent,
//     sensitiveDataOrigin signing key (RSA >= 2048 or NIST P-256+) whose
//     creation data, attestation and signature verify. NewActivation makes
//     the TPM2_MakeCredential challenge that proves the AK lives in the
//     EK's TPM. Errors wrap ErrMalformed, ErrEKUntrusted, ErrAKAttributes or
//     ErrAKCreation.
//   - Attestation: VerifyAttestation checks an Attestation against the AK
//     enrolled for the device and the nonce issued (each quote's extraData
//     is quotedata.Compute(nonce, report)), replays the event log against the
//     verified PCRs 0-7, reads Secure Boot state from the replayed events
//     only and compares the TPM clock with the previous quote's. It returns a
//     Verdict (stored as JSON evidence) listing every Check and a reason per
//     failure; it never returns an error and never panics on hostile input.
//
// Non-test code needs no cgo; the tests drive go-tpm-tools' simulator (cgo)
// through go-attestation as the agent drives a real TPM, and a software TPM
// (verdict_test.go) covers the same path without cgo and seeds
// FuzzVerifyAttestation.
package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// MaxFileSize bounds every input file: real AK keys, quotes, signatures and
// PCR files are a few hundred bytes.
const MaxFileSize = 64 << 10

// MinNonceLen is the shortest nonce (extraData) accepted.
const MinNonceLen = 8

// Reasons a quote is rejected. Errors returned by this package wrap exactly one.
var (
	ErrMalformed            = errors.New("malformed input")
	ErrNonceTooShort        = errors.New("nonce too short")
	ErrBadMagic             = errors.New("attestation not TPM-generated (magic is not TPM_GENERATED_VALUE)")
	ErrNotQuote             = errors.New("attestation is not a quote (type is not TPM_ST_ATTEST_QUOTE)")
	ErrBadSignature         = errors.New("bad signature")
	ErrNonceMismatch        = errors.New("nonce mismatch (extraData differs)")
	ErrPCRSelectionMismatch = errors.New("PCR selection mismatch")
	ErrPCRMissing           = errors.New("PCR value missing")
	ErrPCRDigestMismatch    = errors.New("PCR digest mismatch")
)

// PCRs holds PCR values per bank: hash algorithm, then PCR index, then value.
type PCRs map[tpm2.TPMAlgID]map[uint32][]byte

// BankSelection selects PCRs (ascending) in one bank.
type BankSelection struct {
	Hash tpm2.TPMAlgID
	PCRs []uint32
}

// Selection is a PCR selection in TPML_PCR_SELECTION order.
type Selection []BankSelection

// DefaultSelection is PCRs 0-7 of the SHA-256 bank (README: TPM attestation).
var DefaultSelection = Selection{{Hash: tpm2.TPMAlgSHA256, PCRs: []uint32{0, 1, 2, 3, 4, 5, 6, 7}}}

var algNames = map[tpm2.TPMAlgID]string{
	tpm2.TPMAlgSHA1: "sha1", tpm2.TPMAlgSHA256: "sha256", tpm2.TPMAlgSHA384: "sha384", tpm2.TPMAlgSHA512: "sha512",
}

// AlgName is the tpm2-tools name of a hash algorithm ("sha256").
func AlgName(a tpm2.TPMAlgID) string {
	if n, ok := algNames[a]; ok {
		return n
	}
	return fmt.Sprintf("0x%04x", uint16(a))
}

// String formats s as tpm2-tools does: "sha256:0,1,2+sha1:7".
func (s Selection) String() string {
	var b strings.Builder
	for i, bank := range s {
		if i > 0 {
			b.WriteByte('+')
		}
		b.WriteString(AlgName(bank.Hash))
		b.WriteByte(':')
		for j, p := range bank.PCRs {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatUint(uint64(p), 10))
		}
	}
	return b.String()
}

// ParseSelection parses a tpm2-tools PCR list such as "sha256:0,1,2,3+sha1:0".
func ParseSelection(s string) (Selection, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty PCR list", ErrMalformed)
	}
	var sel Selection
	seenBank := map[tpm2.TPMAlgID]bool{}
	for _, part := range strings.Split(s, "+") {
		name, list, ok := strings.Cut(part, ":")
		if !ok || list == "" {
			return nil, fmt.Errorf("%w: PCR list %q: want BANK:N,N,...", ErrMalformed, part)
		}
		var alg tpm2.TPMAlgID
		for a, n := range algNames {
			if n == strings.ToLower(name) {
				alg = a
			}
		}
		if alg == 0 {
			return nil, fmt.Errorf("%w: PCR list %q: unknown bank %q", ErrMalformed, part, name)
		}
		if seenBank[alg] {
			return nil, fmt.Errorf("%w: PCR list: bank %s twice", ErrMalformed, name)
		}
		seenBank[alg] = true
		seen := map[uint32]bool{}
		bank := BankSelection{Hash: alg}
		for _, f := range strings.Split(list, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
			if err != nil || n > 23 {
				return nil, fmt.Errorf("%w: PCR list %q: bad PCR index %q (0-23)", ErrMalformed, part, f)
			}
			if !seen[uint32(n)] {
				seen[uint32(n)] = true
				bank.PCRs = append(bank.PCRs, uint32(n))
			}
		}
		sort.Slice(bank.PCRs, func(i, j int) bool { return bank.PCRs[i] < bank.PCRs[j] })
		sel = append(sel, bank)
	}
	return sel, nil
}

func (s Selection) equal(o Selection) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i].Hash != o[i].Hash || len(s[i].PCRs) != len(o[i].PCRs) {
			return false
		}
		for j := range s[i].PCRs {
			if s[i].PCRs[j] != o[i].PCRs[j] {
				return false
			}
		}
	}
	return true
}

// selectionFromBitmap converts a pcrSelect bitmap to ascending PCR indices.
func selectionFromBitmap(hash tpm2.TPMAlgID, bitmap []byte) BankSelection {
	b := BankSelection{Hash: hash}
	for i, by := range bitmap {
		for bit := 0; bit < 8; bit++ {
			if by&(1<<bit) != 0 {
				b.PCRs = append(b.PCRs, uint32(i*8+bit))
			}
		}
	}
	return b
}

// Result describes a verified quote.
type Result struct {
	// QualifiedSigner is the TPM2B_NAME of the AK's qualified name.
	QualifiedSigner []byte
	// Selection is the quoted PCR selection.
	Selection Selection
	// PCRDigest is the quoted (and recomputed) PCR digest.
	PCRDigest []byte
	// SigHash is the hash algorithm of the signature and of PCRDigest.
	SigHash tpm2.TPMAlgID
	// Clock, ResetCount, RestartCount and Safe come from TPMS_CLOCK_INFO.
	Clock        uint64
	ResetCount   uint32
	RestartCount uint32
	Safe         bool
	// FirmwareVersion is the TPM vendor's firmware version.
	FirmwareVersion uint64
}

// String is a one-line summary for logs and the CLI.
func (r *Result) String() string {
	return fmt.Sprintf("pcrs %s, digest %s:%x, signer %x, clock %d, resets %d, restarts %d",
		r.Selection, AlgName(r.SigHash), r.PCRDigest, r.QualifiedSigner, r.Clock, r.ResetCount, r.RestartCount)
}

// ReadFile reads at most MaxFileSize bytes of path; a larger file is an error.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrMalformed, path, MaxFileSize)
	}
	return b, nil
}

// ParseAKPublic parses an AK public key in PEM ("PUBLIC KEY", as
// `tpm2_createak -f pem` writes it) or DER SubjectPublicKeyInfo. Only RSA and
// ECDSA keys are accepted.
func ParseAKPublic(data []byte) (crypto.PublicKey, error) {
	der := data
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%w: AK: PEM block %q, want PUBLIC KEY", ErrMalformed, blk.Type)
		}
		der = blk.Bytes
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: AK: %v", ErrMalformed, err)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return pub, nil
	default:
		return nil, fmt.Errorf("%w: AK: unsupported key type %T", ErrMalformed, pub)
	}
}

// unmarshalExact decodes a whole TPM structure: trailing bytes are rejected and
// a panic inside the reflection decoder is reported as malformed input.
func unmarshalExact[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](what string, data []byte) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, r)
		}
	}()
	v, err = tpm2.Unmarshal[T, P](data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if n := len(tpm2.Marshal(*v)); n != len(data) {
		return nil, fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, what, len(data)-n)
	}
	return v, nil
}

// ParseAttest decodes a TPMS_ATTEST as `tpm2_quote -m` writes it and checks it
// is a TPM-generated quote.
func ParseAttest(msg []byte) (*tpm2.TPMSAttest, *tpm2.TPMSQuoteInfo, error) {
	if len(msg) < 6 {
		return nil, nil, fmt.Errorf("%w: quote message: %d bytes, too short for TPMS_ATTEST", ErrMalformed, len(msg))
	}
	if m := binary.BigEndian.Uint32(msg); m != uint32(tpm2.TPMGeneratedValue) {
		return nil, nil, fmt.Errorf("%w: got 0x%08x", ErrBadMagic, m)
	}
	if t := binary.BigEndian.Uint16(msg[4:]); t != uint16(tpm2.TPMSTAttestQuote) {
		return nil, nil, fmt.Errorf("%w: got 0x%04x", ErrNotQuote, t)
	}
	att, err := unmarshalExact[tpm2.TPMSAttest]("quote message", msg)
	if err != nil {
		return nil, nil, err
	}
	q, err := att.Attested.Quote()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: quote message: %v", ErrMalformed, err)
	}
	return att, q, nil
}

// ParseSignature decodes a TPMT_SIGNATURE as `tpm2_quote -s` writes it.
func ParseSignature(sig []byte) (*tpm2.TPMTSignature, error) {
	return unmarshalExact[tpm2.TPMTSignature]("signature", sig)
}

// ParsePCRFile parses the PCR file `tpm2_quote -o` writes in tpm2-tools 5.x
// (its default "serialized" --pcrs_format, the input of `tpm2_checkquote -f`).
// It is a dump of C structures in the host's byte order (little-endian on
// every platform tpm2-tools runs on), with C padding:
//
//	TPML_PCR_SELECTION   132 bytes: uint32 count (<= 16), then 16 TPMS_PCR_SELECTION
//	                     of 8 bytes each: uint16 hash, uint8 sizeofSelect (<= 4),
//	                     uint8 pcrSelect[4], 1 padding byte
//	uint32               number n of TPML_DIGEST that follow
//	TPML_DIGEST[n]       532 bytes each: uint32 count (<= 8), then 8 TPM2B_DIGEST
//	                     of 66 bytes each: uint16 size (<= 64), uint8 buffer[64]
//
// The digests fill the TPML_DIGESTs in order: banks in selection order, PCRs
// ascending within a bank. This layout was established by experiment with
// tpm2-tools 5.4 (testdata/swtpm-rsa): for sha256:0-7 the file is 668 bytes.
func ParsePCRFile(data []byte) (PCRs, Selection, error) {
	const (
		selEntry   = 8
		selMax     = 16
		selSize    = 4 + selMax*selEntry // 132
		digSize    = 2 + 64
		digMax     = 8
		digListSiz = 4 + digMax*digSize // 532
	)
	bad := func(format string, a ...any) (PCRs, Selection, error) {
		return nil, nil, fmt.Errorf("%w: PCR file: "+format, append([]any{ErrMalformed}, a...)...)
	}
	le := binary.LittleEndian
	if len(data) < selSize+4 {
		return bad("%d bytes, too short (want at least %d)", len(data), selSize+4)
	}
	count := le.Uint32(data)
	if count == 0 || count > selMax {
		return bad("%d PCR banks selected (want 1-%d)", count, selMax)
	}
	var sel Selection
	total := 0
	seenBank := map[tpm2.TPMAlgID]bool{}
	for i := 0; i < int(count); i++ {
		e := data[4+i*selEntry:]
		hash := tpm2.TPMAlgID(le.Uint16(e))
		size := int(e[2])
		if size > 4 {
			return bad("bank %d: sizeofSelect %d > 4", i, size)
		}
		if _, err := hash.Hash(); err != nil {
			return bad("bank %d: unsupported hash 0x%04x", i, uint16(hash))
		}
		if seenBank[hash] {
			return bad("bank %s selected twice", AlgName(hash))
		}
		seenBank[hash] = true
		b := selectionFromBitmap(hash, e[3:3+size])
		sel = append(sel, b)
		total += len(b.PCRs)
	}
	if total == 0 {
		return bad("no PCR selected")
	}
	lists := le.Uint32(data[selSize:])
	want := (total + digMax - 1) / digMax
	if int64(lists) != int64(want) {
		return bad("%d digest lists for %d PCRs (want %d)", lists, total, want)
	}
	if len(data) != selSize+4+want*digListSiz {
		return bad("%d bytes, want %d for %d PCRs", len(data), selSize+4+want*digListSiz, total)
	}
	var digests [][]byte
	for l := 0; l < want; l++ {
		dl := data[selSize+4+l*digListSiz:]
		n := int(le.Uint32(dl))
		if n > digMax || (l < want-1 && n != digMax) || len(digests)+n > total {
			return bad("digest list %d holds %d digests", l, n)
		}
		for d := 0; d < n; d++ {
			dg := dl[4+d*digSize:]
			sz := int(le.Uint16(dg))
			if sz > 64 {
				return bad("digest size %d > 64", sz)
			}
			digests = append(digests, bytes.Clone(dg[2:2+sz]))
		}
	}
	if len(digests) != total {
		return bad("%d digests for %d selected PCRs", len(digests), total)
	}
	pcrs := PCRs{}
	k := 0
	for _, b := range sel {
		h, _ := b.Hash.Hash()
		m := map[uint32][]byte{}
		for _, p := range b.PCRs {
			if len(digests[k]) != h.Size() {
				return bad("%s PCR %d: %d-byte value, want %d", AlgName(b.Hash), p, len(digests[k]), h.Size())
			}
			m[p] = digests[k]
			k++
		}
		pcrs[b.Hash] = m
	}
	return pcrs, sel, nil
}

// ParseNonce decodes a hex nonce as given to `tpm2_quote -q`.
func ParseNonce(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "0x")
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: nonce: %v", ErrMalformed, err)
	}
	if len(b) < MinNonceLen {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrNonceTooShort, len(b), MinNonceLen)
	}
	return b, nil
}

// VerifyQuote verifies a TPM2_Quote: msg is the TPMS_ATTEST, sig its
// TPMT_SIGNATURE by akPub, pcrs the reported PCR values, nonce the value the
// quote's extraData must equal and want the PCR selection the quote must
// cover exactly (nil means DefaultSelection). It returns the quote's contents
// only when every check passes.
func VerifyQuote(akPub crypto.PublicKey, msg, sig []byte, pcrs PCRs, nonce []byte, want Selection) (*Result, error) {
	if len(nonce) < MinNonceLen {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrNonceTooShort, len(nonce), MinNonceLen)
	}
	if want == nil {
		want = DefaultSelection
	}
	att, quote, err := ParseAttest(msg)
	if err != nil {
		return nil, err
	}
	tsig, err := ParseSignature(sig)
	if err != nil {
		return nil, err
	}
	sigHash, err := verifySignature(akPub, msg, tsig)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(att.ExtraData.Buffer, nonce) {
		return nil, fmt.Errorf("%w: quote has %x, want %x", ErrNonceMismatch, att.ExtraData.Buffer, nonce)
	}
	var quoted Selection
	for _, s := range quote.PCRSelect.PCRSelections {
		if len(s.PCRSelect) > 4 {
			return nil, fmt.Errorf("%w: quote: pcrSelect of %d bytes", ErrMalformed, len(s.PCRSelect))
		}
		if _, err := s.Hash.Hash(); err != nil {
			return nil, fmt.Errorf("%w: quote: PCR bank 0x%04x", ErrMalformed, uint16(s.Hash))
		}
		quoted = append(quoted, selectionFromBitmap(s.Hash, s.PCRSelect))
	}
	if !quoted.equal(want) {
		return nil, fmt.Errorf("%w: quote covers %q, want %q", ErrPCRSelectionMismatch, quoted, want)
	}
	ch, err := sigHash.Hash()
	if err != nil {
		return nil, fmt.Errorf("%w: signature hash 0x%04x", ErrMalformed, uint16(sigHash))
	}
	h := ch.New()
	for _, b := range quoted {
		hc, _ := b.Hash.Hash()
		for _, p := range b.PCRs {
			v, ok := pcrs[b.Hash][p]
			if !ok {
				return nil, fmt.Errorf("%w: %s PCR %d", ErrPCRMissing, AlgName(b.Hash), p)
			}
			if len(v) != hc.Size() {
				return nil, fmt.Errorf("%w: %s PCR %d is %d bytes, want %d", ErrMalformed, AlgName(b.Hash), p, len(v), hc.Size())
			}
			h.Write(v)
		}
	}
	got := h.Sum(nil)
	if !bytes.Equal(got, quote.PCRDigest.Buffer) {
		return nil, fmt.Errorf("%w: PCR values hash to %x, quote has %x", ErrPCRDigestMismatch, got, quote.PCRDigest.Buffer)
	}
	return &Result{
		QualifiedSigner: bytes.Clone(att.QualifiedSigner.Buffer),
		Selection:       quoted,
		PCRDigest:       got,
		SigHash:         sigHash,
		Clock:           att.ClockInfo.Clock,
		ResetCount:      att.ClockInfo.ResetCount,
		RestartCount:    att.ClockInfo.RestartCount,
		Safe:            att.ClockInfo.Safe,
		FirmwareVersion: att.FirmwareVersion,
	}, nil
}

// verifySignature checks sig over msg with pub and returns the scheme's hash.
func verifySignature(pub crypto.PublicKey, msg []byte, sig *tpm2.TPMTSignature) (tpm2.TPMAlgID, error) {
	var hashAlg tpm2.TPMAlgID
	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		var s *tpm2.TPMSSignatureRSA
		var err error
		if sig.SigAlg == tpm2.TPMAlgRSASSA {
			s, err = sig.Signature.RSASSA()
		} else {
			s, err = sig.Signature.RSAPSS()
		}
		if err != nil {
			return 0, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
		}
		hashAlg = s.Hash
		ch, err := hashAlg.Hash()
		if err != nil || !ch.Available() {
			return 0, fmt.Errorf("%w: signature hash 0x%04x unsupported", ErrMalformed, uint16(hashAlg))
		}
		rpub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return 0, fmt.Errorf("%w: %s signature but the AK is %T", ErrBadSignature, AlgName(sig.SigAlg), pub)
		}
		d := ch.New()
		d.Write(msg)
		if sig.SigAlg == tpm2.TPMAlgRSASSA {
			err = rsa.VerifyPKCS1v15(rpub, ch, d.Sum(nil), s.Sig.Buffer)
		} else {
			err = rsa.VerifyPSS(rpub, ch, d.Sum(nil), s.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
	case tpm2.TPMAlgECDSA:
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return 0, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
		}
		hashAlg = s.Hash
		ch, err := hashAlg.Hash()
		if err != nil || !ch.Available() {
			return 0, fmt.Errorf("%w: signature hash 0x%04x unsupported", ErrMalformed, uint16(hashAlg))
		}
		epub, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return 0, fmt.Errorf("%w: ecdsa signature but the AK is %T", ErrBadSignature, pub)
		}
		d := ch.New()
		d.Write(msg)
		r := new(big.Int).SetBytes(s.SignatureR.Buffer)
		ss := new(big.Int).SetBytes(s.SignatureS.Buffer)
		if !ecdsa.Verify(epub, d.Sum(nil), r, ss) {
			return 0, fmt.Errorf("%w: ecdsa verification failed", ErrBadSignature)
		}
	default:
		return 0, fmt.Errorf("%w: signature scheme 0x%04x unsupported (want rsassa, rsapss or ecdsa)", ErrMalformed, uint16(sig.SigAlg))
	}
	return hashAlg, nil
}
