// Package tpm is the agent's door to a TPM: open a device or an emulator,
// create an attestation key, quote PCRs.
//
// Open takes "swtpm:HOST:PORT" (the data port of an swtpm, raw TPM commands
// over TCP) or an absolute device path such as "/dev/tpmrm0" (Linux only).
// CreateAK creates a restricted RSA-2048 RSASSA-SHA256 signing key as a
// primary object, and Quote reads SHA-256 PCRs and quotes them with it,
// producing the inputs of server/attest.VerifyQuote.
package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

const (
	// DialTimeout bounds connecting to an swtpm.
	DialTimeout = 5 * time.Second
	// CommandTimeout bounds one command on an swtpm connection (RSA key
	// generation in CreatePrimary is the slow one).
	CommandTimeout = 2 * time.Minute
	// maxResponse bounds a response read from the network.
	maxResponse = 1 << 16
	// quoteAttempts is how often Quote retries when PCRs change between
	// reading and quoting them (DESIGN §4).
	quoteAttempts = 3
	// MinNonceLen and MaxNonceLen bound the nonce (TPM2B_DATA holds at most
	// the size of the largest digest; the server rejects short nonces).
	MinNonceLen = 8
	MaxNonceLen = 64
)

// Errors callers can tell apart with errors.Is.
var (
	ErrBadSpec     = errors.New("bad TPM spec (want swtpm:HOST:PORT or an absolute device path)")
	ErrPCRsChanged = errors.New("PCRs kept changing between reading and quoting them")
)

// TPM is an open TPM. It implements go-tpm's transport.TPM, so tpm2 commands
// can be executed on it directly; commands are serialised.
type TPM struct {
	mu sync.Mutex
	t  transport.TPMCloser
}

// Send implements transport.TPM. A command the TPM answers with
// TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING is sent again after a
// growing pause (1 ms doubling, about 4 s in all).
func (t *TPM) Send(cmd []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return nil, errors.New("tpm: closed")
	}
	for backoff := time.Millisecond; ; backoff *= 2 {
		rsp, err := t.t.Send(cmd)
		if err != nil || len(rsp) < 10 || backoff > 2*time.Second {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			time.Sleep(backoff)
		default:
			return rsp, nil
		}
	}
}

// Close closes the connection or device.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return nil
	}
	err := t.t.Close()
	t.t = nil
	return err
}

// Open opens the TPM named by spec and sends TPM2_Startup(CLEAR); a TPM that
// is already started (TPM_RC_INITIALIZE) is fine.
func Open(spec string) (*TPM, error) {
	var (
		tc  transport.TPMCloser
		err error
	)
	switch {
	case strings.HasPrefix(spec, "swtpm:"):
		addr := strings.TrimPrefix(spec, "swtpm:")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadSpec, spec, err)
		}
		tc, err = dialSwtpm(addr)
	case filepath.IsAbs(spec):
		tc, err = openDevice(spec)
	default:
		return nil, fmt.Errorf("%w: %q", ErrBadSpec, spec)
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: open %s: %w", spec, err)
	}
	t := &TPM{t: tc}
	if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(t); err != nil && !errors.Is(err, tpm2.TPMRCInitialize) {
		t.Close()
		return nil, fmt.Errorf("tpm: %s: TPM2_Startup: %w", spec, err)
	}
	return t, nil
}

// streamTPM sends raw TPM commands over a stream (swtpm's data port) and reads
// each response whole: header first, then the size it announces.
type streamTPM struct {
	c net.Conn
}

func dialSwtpm(addr string) (transport.TPMCloser, error) {
	c, err := net.DialTimeout("tcp", addr, DialTimeout)
	if err != nil {
		return nil, err
	}
	return &streamTPM{c: c}, nil
}

func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	if err := s.c.SetDeadline(time.Now().Add(CommandTimeout)); err != nil {
		return nil, err
	}
	if _, err := s.c.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm: send: %w", err)
	}
	var hdr [10]byte // tag, size, response code
	if _, err := io.ReadFull(s.c, hdr[:]); err != nil {
		return nil, fmt.Errorf("tpm: read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:])
	if size < uint32(len(hdr)) || size > maxResponse {
		return nil, fmt.Errorf("tpm: response size %d out of range", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(s.c, rsp[len(hdr):]); err != nil {
		return nil, fmt.Errorf("tpm: read response: %w", err)
	}
	return rsp, nil
}

func (s *streamTPM) Close() error { return s.c.Close() }

// AK is an attestation key loaded in the TPM.
type AK struct {
	// Handle is the transient handle of the key; Name its TPM name.
	Handle tpm2.TPMHandle
	Name   tpm2.TPM2BName
	// Public is the key's public part (*rsa.PublicKey).
	Public crypto.PublicKey
	// PublicArea is the marshalled TPMT_PUBLIC of the key.
	PublicArea []byte

	tpm *TPM
}

// Close flushes the key from the TPM.
func (ak *AK) Close() error {
	if ak.tpm == nil {
		return nil
	}
	_, err := tpm2.FlushContext{FlushHandle: ak.Handle}.Execute(ak.tpm)
	ak.tpm = nil
	if err != nil {
		return fmt.Errorf("tpm: flush AK: %w", err)
	}
	return nil
}

// AKOptions select where CreateAKWith creates the AK.
type AKOptions struct {
	// Hierarchy is tpm2.TPMRHEndorsement (the zero value means it) or
	// tpm2.TPMRHOwner.
	Hierarchy tpm2.TPMHandle
	// Unique is the template's unique field (at most 256 bytes). A primary key
	// is derived from the hierarchy's seed and its template, so the same
	// options give the same key again until the seed changes; another Unique
	// gives another key.
	Unique []byte
}

// AKTemplate returns the AK template: a restricted RSA-2048 signing key with
// scheme RSASSA-SHA256.
func AKTemplate(unique []byte) tpm2.TPMTPublic {
	u := make([]byte, 256)
	copy(u, unique)
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			Restricted:          true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: u}),
	}
}

// CreateAK creates the AK in the endorsement hierarchy with the default
// template: it is the same key every time on a given TPM (until the
// endorsement seed changes), so the agent can recreate it after a restart.
func CreateAK(t *TPM) (*AK, error) {
	return CreateAKWith(t, AKOptions{})
}

// CreateAKWith creates an AK as a primary object as opts say.
func CreateAKWith(t *TPM, opts AKOptions) (*AK, error) {
	h := opts.Hierarchy
	if h == 0 {
		h = tpm2.TPMRHEndorsement
	}
	if h != tpm2.TPMRHEndorsement && h != tpm2.TPMRHOwner {
		return nil, fmt.Errorf("tpm: AK hierarchy 0x%08x: want endorsement or owner", uint32(h))
	}
	if len(opts.Unique) > 256 {
		return nil, fmt.Errorf("tpm: AK unique of %d bytes, at most 256", len(opts.Unique))
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: h, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(AKTemplate(opts.Unique)),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: create AK: %w", err)
	}
	ak := &AK{Handle: rsp.ObjectHandle, Name: rsp.Name, tpm: t}
	pub, err := rsp.OutPublic.Contents()
	if err == nil {
		ak.PublicArea = tpm2.Marshal(*pub)
		ak.Public, err = tpm2.Pub(*pub)
	}
	if err != nil {
		ak.Close()
		return nil, fmt.Errorf("tpm: AK public area: %w", err)
	}
	return ak, nil
}

// Quote is a TPM2_Quote with the PCR values it covers.
type Quote struct {
	// Msg is the TPMS_ATTEST (the attestationData of the TPM2B_ATTEST).
	Msg []byte
	// Sig is the marshalled TPMT_SIGNATURE over Msg.
	Sig []byte
	// PCRs holds the quoted values: bank, PCR index, value. Its type is
	// assignable to attest.PCRs.
	PCRs map[tpm2.TPMAlgID]map[uint32][]byte
}

// selection converts PCR indices (0-23) to ascending unique indices and a
// SHA-256 TPML_PCR_SELECTION.
func selection(pcrs []int) ([]uint32, tpm2.TPMLPCRSelection, error) {
	if len(pcrs) == 0 {
		return nil, tpm2.TPMLPCRSelection{}, errors.New("tpm: no PCR selected")
	}
	bitmap := make([]byte, 3)
	for _, p := range pcrs {
		if p < 0 || p > 23 {
			return nil, tpm2.TPMLPCRSelection{}, fmt.Errorf("tpm: PCR %d out of range 0-23", p)
		}
		bitmap[p/8] |= 1 << (p % 8)
	}
	var idx []uint32
	for p := 0; p < 24; p++ {
		if bitmap[p/8]&(1<<(p%8)) != 0 {
			idx = append(idx, uint32(p))
		}
	}
	return idx, tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: bitmap}}}, nil
}

// ReadPCRs reads SHA-256 PCRs, at most 8 per TPM2_PCR_Read (a TPM may return
// fewer than asked: the rest is asked again).
func ReadPCRs(t transport.TPM, pcrs []int) (map[uint32][]byte, error) {
	idx, _, err := selection(pcrs)
	if err != nil {
		return nil, err
	}
	vals := map[uint32][]byte{}
	for rounds := 0; len(vals) < len(idx); rounds++ {
		if rounds > len(idx) {
			return nil, errors.New("tpm: PCR_Read makes no progress")
		}
		var want []int
		for _, p := range idx {
			if _, ok := vals[p]; !ok && len(want) < 8 {
				want = append(want, int(p))
			}
		}
		_, sel, _ := selection(want)
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: PCR_Read: %w", err)
		}
		var got []uint32
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash != tpm2.TPMAlgSHA256 {
				continue
			}
			for i, b := range s.PCRSelect {
				for bit := 0; bit < 8; bit++ {
					if b&(1<<bit) != 0 {
						got = append(got, uint32(i*8+bit))
					}
				}
			}
		}
		if len(got) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("tpm: PCR_Read returned %d values for %d PCRs", len(rsp.PCRValues.Digests), len(got))
		}
		if len(got) == 0 {
			return nil, errors.New("tpm: PCR_Read returned no SHA-256 PCR (is the bank allocated?)")
		}
		for i, p := range got {
			if len(rsp.PCRValues.Digests[i].Buffer) != sha256.Size {
				return nil, fmt.Errorf("tpm: PCR %d: %d-byte value", p, len(rsp.PCRValues.Digests[i].Buffer))
			}
			vals[p] = bytes.Clone(rsp.PCRValues.Digests[i].Buffer)
		}
	}
	return vals, nil
}

// Quote reads the SHA-256 PCRs pcrs and quotes them with ak and nonce as
// qualifying data. If the PCRs change between reading and quoting them (the
// quoted digest differs from the one recomputed over the values read), it
// tries again, up to 3 times in all, then fails with ErrPCRsChanged.
func (ak *AK) Quote(nonce []byte, pcrs []int) (*Quote, error) {
	if ak.tpm == nil {
		return nil, errors.New("tpm: AK is closed")
	}
	if len(nonce) < MinNonceLen || len(nonce) > MaxNonceLen {
		return nil, fmt.Errorf("tpm: nonce of %d bytes, want %d-%d", len(nonce), MinNonceLen, MaxNonceLen)
	}
	idx, sel, err := selection(pcrs)
	if err != nil {
		return nil, err
	}
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	for attempt := 0; attempt < quoteAttempts; attempt++ {
		vals, err := ReadPCRs(ak.tpm, pcrs)
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: ak.Handle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme: tpm2.TPMTSigScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
			},
			PCRSelect: sel,
		}.Execute(ak.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
		msg := bytes.Clone(rsp.Quoted.Bytes())
		att, err := rsp.Quoted.Contents()
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: attestation: %w", err)
		}
		info, err := att.Attested.Quote()
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: attestation: %w", err)
		}
		h := sha256.New()
		for _, p := range idx {
			h.Write(vals[p])
		}
		if !bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer) {
			continue // a PCR was extended between PCR_Read and Quote
		}
		return &Quote{
			Msg:  msg,
			Sig:  tpm2.Marshal(rsp.Signature),
			PCRs: map[tpm2.TPMAlgID]map[uint32][]byte{tpm2.TPMAlgSHA256: vals},
		}, nil
	}
	return nil, fmt.Errorf("tpm: %w (%d attempts)", ErrPCRsChanged, quoteAttempts)
}

// QuotePCRs is ak.Quote(nonce, pcrs) after checking that ak was created on t
// (the function cannot be called Quote: that is the result type).
func QuotePCRs(t *TPM, ak *AK, nonce []byte, pcrs []int) (*Quote, error) {
	if ak.tpm != t {
		return nil, errors.New("tpm: AK belongs to another TPM")
	}
	return ak.Quote(nonce, pcrs)
}
