// Package tpm is the agent's door to a TPM, built on go-attestation: it opens
// the platform TPM, a TPM character device or an swtpm, keeps an attestation
// key (AK) under the storage root key across restarts, reports the
// endorsement key (EK) and its certificate for enrollment, answers the
// server's credential-activation challenge, and quotes PCRs 0-7 in every PCR
// bank with the TCG firmware event log (README: TPM attestation).
//
// Open takes a spec: "" is the platform TPM (go-attestation's own discovery:
// /dev/tpmrm0 on Linux, TBS on Windows; none on macOS), "swtpm:HOST:PORT" the
// data port of an swtpm over TCP, "unix:PATH" an swtpm's Unix socket, and an
// absolute path a TPM character device (Linux) or an swtpm Unix socket.
// Commands to devices and swtpm go through one connection that reads
// responses by their header length and re-sends commands answered with
// TPM_RC_RETRY.
package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/evident-dev/evident/internal/atomicfile"
	"github.com/evident-dev/evident/internal/quotedata"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// Errors callers can tell apart with errors.Is.
var (
	// ErrNoTPM: this machine has no usable TPM, or the spec names none (it
	// is malformed, or the device or socket does not exist). The agent
	// scores such a device "no TPM". Failing to talk to a TPM that exists
	// (a refused connection, a command error) is a plain error.
	ErrNoTPM = errors.New("no usable TPM")
	// ErrPCRsChanged: the PCRs kept changing between reading and quoting
	// them.
	ErrPCRsChanged = errors.New("PCRs kept changing between reading and quoting them")
)

// quoteAttempts is how often a bank is read and quoted before Attest gives
// up with ErrPCRsChanged.
const quoteAttempts = 3

// quotedPCRs are the PCRs Attest quotes: the firmware's (README: TPM attestation).
var quotedPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7}

// Device is an open TPM. Its methods may be called from several goroutines:
// they take turns.
type Device struct {
	mu      sync.Mutex
	tpm     *attest.TPM
	rt      *retryTPM // nil for the platform TPM
	logPath string    // "" means go-attestation's MeasurementLog
	ek      *attest.EK
	closed  bool
}

// Open opens the TPM named by spec (see the package documentation).
// eventLog is the path of the TCG firmware event log; "" means the
// platform's (/sys/kernel/security/tpm0/binary_bios_measurements on Linux,
// go-attestation's own with the platform TPM on Windows).
func Open(spec, eventLog string) (*Device, error) {
	if spec == "" {
		t, err := attest.OpenTPM(nil)
		if err != nil {
			return nil, fmt.Errorf("tpm: open the platform TPM: %w: %v", ErrNoTPM, err)
		}
		return &Device{tpm: t, logPath: eventLog}, nil
	}
	tc, err := openSpec(spec)
	if err != nil {
		return nil, err
	}
	if eventLog == "" {
		eventLog = defaultEventLog
	}
	d, err := openTransport(tc, eventLog)
	if err != nil {
		return nil, fmt.Errorf("tpm: %s: %w", spec, err)
	}
	return d, nil
}

// openSpec connects to what a non-empty spec names.
func openSpec(spec string) (transport.TPMCloser, error) {
	var (
		tc  transport.TPMCloser
		err error
	)
	switch {
	case strings.HasPrefix(spec, "swtpm:"):
		addr := strings.TrimPrefix(spec, "swtpm:")
		if _, _, perr := splitHostPort(addr); perr != nil {
			return nil, fmt.Errorf("tpm: %w: bad spec %q (want swtpm:HOST:PORT): %v", ErrNoTPM, spec, perr)
		}
		tc, err = dialStream("tcp", addr)
	case strings.HasPrefix(spec, "unix:"):
		path := strings.TrimPrefix(spec, "unix:")
		if path == "" {
			return nil, fmt.Errorf("tpm: %w: bad spec %q (want unix:PATH)", ErrNoTPM, spec)
		}
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("tpm: %w: %s does not exist", ErrNoTPM, path)
		}
		tc, err = dialStream("unix", path)
	case filepath.IsAbs(spec):
		fi, serr := os.Stat(spec)
		switch {
		case errors.Is(serr, fs.ErrNotExist):
			return nil, fmt.Errorf("tpm: %w: %s does not exist", ErrNoTPM, spec)
		case serr == nil && fi.Mode()&fs.ModeSocket != 0:
			tc, err = dialStream("unix", spec)
		default:
			tc, err = openDevice(spec)
		}
	default:
		return nil, fmt.Errorf("tpm: %w: bad spec %q (want \"\", swtpm:HOST:PORT, unix:PATH or an absolute device path)", ErrNoTPM, spec)
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: open %s: %w", spec, err)
	}
	return tc, nil
}

// openTransport starts the TPM behind tc, flushes what an earlier user left
// loaded and hands it to go-attestation. It closes tc on failure.
func openTransport(tc transport.TPMCloser, logPath string) (*Device, error) {
	rt := &retryTPM{t: tc}
	if err := startup(rt); err != nil {
		rt.Close()
		return nil, err
	}
	if err := flushStale(rt); err != nil {
		rt.Close()
		return nil, err
	}
	t, err := attest.OpenTPM(&attest.OpenConfig{CommandChannel: &channel{t: rt, logPath: logPath}})
	if err != nil {
		rt.Close()
		return nil, err
	}
	return &Device{tpm: t, rt: rt, logPath: logPath}, nil
}

// Close closes the TPM. Keys not closed yet stay loaded in a TPM without a
// resource manager until the next Open flushes them.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.tpm.Close()
}

func (d *Device) lock() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errors.New("tpm: device closed")
	}
	return nil
}

// AK is an attestation key loaded in the TPM: a restricted RSA signing key
// created under the storage root key by go-attestation.
type AK struct {
	d      *Device
	ak     *attest.AK
	params attest.AttestationParameters
	pub    *attest.AKPublic
	closed bool
}

// LoadOrCreateAK loads the AK whose blob (attest.AK.Marshal output) is at
// path, or, when there is no file there, creates a new AK under the SRK and
// writes its blob there atomically with mode 0600. created reports which. A
// blob that no longer loads (the TPM was cleared) is an error, not replaced:
// the caller decides whether to remove it and enroll a new AK.
func (d *Device) LoadOrCreateAK(path string) (ak *AK, created bool, err error) {
	if err := d.lock(); err != nil {
		return nil, false, err
	}
	defer d.mu.Unlock()
	blob, err := os.ReadFile(path)
	switch {
	case err == nil:
		a, err := d.tpm.LoadAK(blob)
		if err != nil {
			return nil, false, fmt.Errorf("tpm: load AK from %s: %w", path, err)
		}
		ak, err := d.newAK(a)
		return ak, false, err
	case errors.Is(err, fs.ErrNotExist):
		a, err := d.tpm.NewAK(nil)
		if err != nil {
			return nil, false, fmt.Errorf("tpm: create AK: %w", err)
		}
		ak, err := d.newAK(a)
		if err != nil {
			return nil, false, err
		}
		blob, err := a.Marshal()
		if err == nil {
			err = atomicfile.WriteFile(path, blob, 0o600)
		}
		if err != nil {
			a.Close(d.tpm)
			return nil, false, fmt.Errorf("tpm: save AK: %w", err)
		}
		return ak, true, nil
	default:
		return nil, false, fmt.Errorf("tpm: read AK: %w", err)
	}
}

func (d *Device) newAK(a *attest.AK) (*AK, error) {
	params := a.AttestationParameters()
	pub, err := attest.ParseAKPublic(params.Public)
	if err != nil {
		a.Close(d.tpm)
		return nil, fmt.Errorf("tpm: AK public: %w", err)
	}
	return &AK{d: d, ak: a, params: params, pub: pub}, nil
}

// Public returns the AK's public key.
func (ak *AK) Public() crypto.PublicKey { return ak.pub.Public }

// Close flushes the key from the TPM.
func (ak *AK) Close() error {
	ak.d.mu.Lock()
	defer ak.d.mu.Unlock()
	if ak.closed || ak.d.closed {
		ak.closed = true
		return nil
	}
	ak.closed = true
	if err := ak.ak.Close(ak.d.tpm); err != nil {
		return fmt.Errorf("tpm: flush AK: %w", err)
	}
	return nil
}

func (ak *AK) check(d *Device) error {
	switch {
	case ak == nil:
		return errors.New("tpm: no AK")
	case ak.d != d:
		return errors.New("tpm: AK belongs to another TPM")
	case ak.closed:
		return errors.New("tpm: AK closed")
	}
	return nil
}

// endorsementKey finds the EK once: the RSA EK with a certificate, else
// the ECC EK with a certificate, else the RSA EK (created from the default
// template if need be) without one. Call with d.mu held.
func (d *Device) endorsementKey() (*attest.EK, error) {
	if d.ek != nil {
		return d.ek, nil
	}
	certified, err := d.tpm.EKCertificates()
	if err != nil {
		return nil, fmt.Errorf("tpm: read EK certificates: %w", err)
	}
	for _, want := range []func(crypto.PublicKey) bool{
		func(p crypto.PublicKey) bool { _, ok := p.(*rsa.PublicKey); return ok },
		func(p crypto.PublicKey) bool { _, ok := p.(*ecdsa.PublicKey); return ok },
	} {
		for i := range certified {
			if want(certified[i].Public) {
				d.ek = &certified[i]
				return d.ek, nil
			}
		}
	}
	eks, err := d.tpm.EKs()
	if err != nil {
		return nil, fmt.Errorf("tpm: read EK: %w", err)
	}
	if len(eks) == 0 {
		return nil, errors.New("tpm: no EK")
	}
	d.ek = &eks[0]
	return d.ek, nil
}

// EK returns the endorsement key Identity reports: its public key (PKIX
// DER) and its certificate (DER; nil when the TPM holds none). Servers
// allowlist TPMs by the SHA-256 of that public key.
func (d *Device) EK() (pub, cert []byte, err error) {
	if err := d.lock(); err != nil {
		return nil, nil, err
	}
	defer d.mu.Unlock()
	ek, err := d.endorsementKey()
	if err != nil {
		return nil, nil, err
	}
	if pub, err = x509.MarshalPKIXPublicKey(ek.Public); err != nil {
		return nil, nil, fmt.Errorf("tpm: EK public: %w", err)
	}
	if ek.Certificate != nil {
		cert = bytes.Clone(ek.Certificate.Raw)
	}
	return pub, cert, nil
}

// Identity returns the EK public key (PKIX DER; the RSA EK when there is
// one, else the ECC EK), the EK certificate (DER) when the TPM holds one,
// and the AK's attestation parameters.
func (d *Device) Identity(ak *AK) (*evidentv1.TPMIdentity, error) {
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	if err := ak.check(d); err != nil {
		return nil, err
	}
	ek, err := d.endorsementKey()
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(ek.Public)
	if err != nil {
		return nil, fmt.Errorf("tpm: EK public: %w", err)
	}
	id := &evidentv1.TPMIdentity{
		EkPub: pub,
		Ak: &evidentv1.AKParameters{
			Public:            bytes.Clone(ak.params.Public),
			CreateData:        bytes.Clone(ak.params.CreateData),
			CreateAttestation: bytes.Clone(ak.params.CreateAttestation),
			CreateSignature:   bytes.Clone(ak.params.CreateSignature),
		},
	}
	if ek.Certificate != nil {
		id.EkCert = bytes.Clone(ek.Certificate.Raw)
	}
	return id, nil
}

// Activate runs TPM2_ActivateCredential on the server's challenge with the
// AK and the EK Identity reports, and returns the secret it recovers.
func (d *Device) Activate(ak *AK, ch *evidentv1.ActivationChallenge) ([]byte, error) {
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	if err := ak.check(d); err != nil {
		return nil, err
	}
	if ch == nil {
		return nil, errors.New("tpm: no activation challenge")
	}
	ek, err := d.endorsementKey()
	if err != nil {
		return nil, err
	}
	secret, err := ak.ak.ActivateCredentialWithEK(d.tpm, attest.EncryptedCredential{
		Credential: ch.GetCredential(),
		Secret:     ch.GetSecret(),
	}, *ek)
	if err != nil {
		return nil, fmt.Errorf("tpm: activate credential: %w", err)
	}
	return secret, nil
}

// Attest quotes PCRs 0-7 of every PCR bank go-attestation handles (SHA-1,
// SHA-256, SHA-384, SHA-512) with the AK, with quotedata.Compute(nonce,
// report) as qualifying data, and returns the quotes, the quoted PCR values
// and the firmware event log. An unreadable event log is reported in
// EventLogError, not as an error. When a bank's PCRs change between reading
// and quoting them (the quote's digest does not match the values read) the
// bank is read and quoted again, up to 3 times in all, then Attest fails
// with ErrPCRsChanged.
func (d *Device) Attest(ak *AK, nonce, report []byte) (*evidentv1.Attestation, error) {
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	if err := ak.check(d); err != nil {
		return nil, err
	}
	qd := quotedata.Compute(nonce, report)
	banks, bankErr := d.tpm.PCRBanks()
	if len(banks) == 0 {
		return nil, fmt.Errorf("tpm: read PCR banks: %v", bankErr)
	}
	att := &evidentv1.Attestation{Nonce: bytes.Clone(nonce), Report: report}
	// The log first, as go-attestation's AttestPlatform does: events the
	// firmware measures after this point would then be missing from it, but
	// the firmware has long finished when the agent runs.
	if log, err := d.eventLog(); err != nil {
		att.EventLogError = err.Error()
	} else if len(log) == 0 {
		att.EventLogError = "event log is empty"
	} else {
		att.EventLog = log
	}
	for _, bank := range banks {
		switch bank {
		case attest.HashSHA1, attest.HashSHA256, attest.HashSHA384, attest.HashSHA512:
		default:
			continue // a bank go-attestation cannot hash, e.g. SM3
		}
		q, pcrs, err := d.quoteBank(ak, bank, qd)
		if err != nil {
			return nil, err
		}
		att.Quotes = append(att.Quotes, &evidentv1.Quote{
			HashAlg:   uint32(bank),
			Attest:    q.Quote,
			Signature: q.Signature,
		})
		for _, p := range pcrs {
			att.Pcrs = append(att.Pcrs, &evidentv1.PCRValue{HashAlg: uint32(bank), Index: uint32(p.Index), Digest: p.Digest})
		}
	}
	if len(att.Quotes) == 0 {
		return nil, fmt.Errorf("tpm: no PCR bank to quote among %v", banks)
	}
	return att, nil
}

// quoteBank reads PCRs 0-7 of bank, quotes them and checks the quote
// covers the values read.
func (d *Device) quoteBank(ak *AK, bank attest.HashAlg, qd []byte) (*attest.Quote, []attest.PCR, error) {
	var lastErr error
	for attempt := 0; attempt < quoteAttempts; attempt++ {
		all, err := d.tpm.PCRs(bank)
		if err != nil {
			return nil, nil, fmt.Errorf("tpm: read %v PCRs: %w", bank, err)
		}
		if len(all) < len(quotedPCRs) {
			return nil, nil, fmt.Errorf("tpm: read %d %v PCRs", len(all), bank)
		}
		pcrs := all[:len(quotedPCRs)]
		q, err := ak.ak.QuotePCRs(d.tpm, qd, bank, quotedPCRs)
		if err != nil {
			return nil, nil, fmt.Errorf("tpm: quote %v PCRs: %w", bank, err)
		}
		if lastErr = ak.pub.Verify(*q, pcrs, qd); lastErr == nil {
			return q, pcrs, nil
		}
	}
	return nil, nil, fmt.Errorf("tpm: %v bank: %w (%d attempts, last: %v)", bank, ErrPCRsChanged, quoteAttempts, lastErr)
}

// eventLog reads the firmware event log. Call with d.mu held.
func (d *Device) eventLog() ([]byte, error) {
	if d.logPath != "" {
		return os.ReadFile(d.logPath)
	}
	return d.tpm.MeasurementLog()
}
