// Package pki is the server's certificate authority: it creates (on first
// start) and loads the CA and the server's TLS certificate from the data
// directory, signs device certificates from enrollment CSRs, and formats the
// enrollment token that carries the CA pin.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/evident-dev/evident/internal/atomicfile"
)

// File names inside the server data directory.
const (
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// DeviceURIPrefix is the URI SAN prefix that carries the device id in device
// certificates, e.g. evident://device/dev_3f2a...
const DeviceURIPrefix = "evident://device/"

// CA holds the server's certificate authority.
type CA struct {
	// Cert is the issuing CA: it signs the server's and the devices'
	// certificates.
	Cert *x509.Certificate
	key  crypto.Signer
	// DeviceCertTTL is the lifetime of issued device certificates.
	DeviceCertTTL time.Duration
	now           func() time.Time
	// others are the other CAs trusted during a rollover: the next one
	// (before it takes over) or the previous one (until the last device
	// certificate it issued has expired).
	others []*x509.Certificate
	// Rollover is the rollover in progress (zero: none).
	Rollover Rollover

	poolOnce sync.Once
	pool     *x509.CertPool
}

// LoadOrCreate loads the CA from dir, creating it (and dir, 0700) on first
// start. Its clock is time.Now.
func LoadOrCreate(dir string) (*CA, error) { return LoadOrCreateWithClock(dir, time.Now) }

// LoadOrCreateWithClock is LoadOrCreate with now as the clock that dates the
// CA when it is created, and the server and device certificates it issues.
func LoadOrCreateWithClock(dir string, now func() time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		// Rollover files without a CA certificate are a takeover cut
		// short: never replace that CA with a new one.
		for _, f := range []string{nextCertFile, nextKeyFile, prevCertFile, prevKeyFile, rolloverFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return nil, fmt.Errorf("load CA: %s is missing but %s is there: an interrupted CA rollover? Start evident-server run to finish it, or restore the pki directory from a backup", certPath, f)
			}
		}
		if err := createCA(certPath, keyPath, now()); err != nil {
			return nil, fmt.Errorf("create CA: %w", err)
		}
	}
	cert, key, err := loadPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate", certPath)
	}
	ca := &CA{Cert: cert, key: key, DeviceCertTTL: DefaultDeviceCertTTL, now: now}
	if err := ca.loadRollover(dir); err != nil {
		return nil, err
	}
	return ca, nil
}

// DefaultDeviceCertTTL is the lifetime of device certificates.
const DefaultDeviceCertTTL = 90 * 24 * time.Hour

func createCA(certPath, keyPath string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "Evident device CA", Organization: []string{"Evident"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return writePair(certPath, keyPath, der, key)
}

// Fingerprint is the SHA-256 of the CA certificate (DER), hex encoded: the
// pin agents check on first contact.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert.Raw) }

// Fingerprint returns the hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// PEM returns the trusted CA certificates in PEM form, the issuing CA
// first: the agents' trust bundle.
func (ca *CA) PEM() []byte {
	var b []byte
	for _, c := range ca.Trusted() {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// Trusted returns the CAs whose certificates are accepted: the issuing CA
// first, then the next or previous one of a rollover.
func (ca *CA) Trusted() []*x509.Certificate {
	return append([]*x509.Certificate{ca.Cert}, ca.others...)
}

// Pool returns a pool of the trusted CAs (what device certificates are
// verified against).
func (ca *CA) Pool() *x509.CertPool {
	ca.poolOnce.Do(func() {
		ca.pool = x509.NewCertPool()
		for _, c := range ca.Trusted() {
			ca.pool.AddCert(c)
		}
	})
	return ca.pool
}

// ServerCertificate loads the server certificate from dir, issuing a new one
// when it is missing, expires within 30 days, or lacks one of the requested
// names (hosts are DNS names or IP addresses).
func (ca *CA) ServerCertificate(dir string, hosts []string) (tls.Certificate, error) {
	hosts = slices.DeleteFunc(slices.Clone(hosts), func(h string) bool { return h == "" })
	certPath, keyPath := filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile)
	if cert, key, err := loadPair(certPath, keyPath); err == nil && covers(cert, hosts) &&
		cert.NotAfter.After(ca.now().Add(30*24*time.Hour)) && cert.CheckSignatureFrom(ca.Cert) == nil {
		return tls.Certificate{Certificate: [][]byte{cert.Raw, ca.Cert.Raw}, PrivateKey: key, Leaf: cert}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "evident-server", Organization: []string{"Evident"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return tls.Certificate{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func covers(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// CheckCSR parses a DER CSR and checks its signature and key: what
// enrollment verifies before it spends an enrollment secret.
func CheckCSR(csrDER []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR signature: %w", err)
	}
	switch pub := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve.Params().BitSize < 256 {
			return nil, errors.New("CSR key: ECDSA keys must be at least P-256")
		}
	default:
		return nil, fmt.Errorf("CSR key: unsupported key type %T (use ECDSA P-256)", csr.PublicKey)
	}
	return csr, nil
}

// SignDevice issues a client certificate for deviceID from a DER CSR. The
// CSR's signature is checked; only its public key is used.
func (ca *CA) SignDevice(csrDER []byte, deviceID string) ([]byte, error) {
	if !ValidDeviceID(deviceID) {
		return nil, fmt.Errorf("device id %q is not one this server issues", deviceID)
	}
	csr, err := CheckCSR(csrDER)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	uri, err := parseURI(DeviceURIPrefix + deviceID)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: deviceID, Organization: []string{"Evident device"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ca.DeviceCertTTL),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         uri,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.key)
}

// DeviceID returns the device id carried by a verified device certificate.
func DeviceID(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		if s := u.String(); strings.HasPrefix(s, DeviceURIPrefix) {
			id := strings.TrimPrefix(s, DeviceURIPrefix)
			if ValidDeviceID(id) {
				return id, nil
			}
		}
	}
	return "", errors.New("certificate carries no Evident device id")
}

// ValidDeviceID reports whether id has the shape the server issues.
func ValidDeviceID(id string) bool {
	if !strings.HasPrefix(id, "dev_") || len(id) != 4+32 {
		return false
	}
	_, err := hex.DecodeString(id[4:])
	return err == nil
}

// NewDeviceID returns a fresh random device id.
func NewDeviceID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "dev_" + hex.EncodeToString(b)
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func parseURI(s string) ([]*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("device URI: %w", err)
	}
	return []*url.URL{u}, nil
}

// Serial is a certificate's serial number as the store keeps it: lowercase
// hex.
func Serial(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

// KeySHA256 is the SHA-256 of a certificate's or request's public key
// (PKIX DER): how the store recognises a key certified before.
func KeySHA256(pub any) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return sum[:], nil
}

// serverRenewBefore is how long before its expiry the server certificate is
// replaced.
const serverRenewBefore = 30 * 24 * time.Hour

// ServerCertSource serves the server certificate and replaces it, without
// a restart, once it is within 30 days of expiry: the server runs for
// years on certificates of one.
type ServerCertSource struct {
	ca    func() *CA
	dir   string
	hosts []string

	mu     sync.Mutex
	cert   *tls.Certificate
	issuer *x509.Certificate
}

// NewServerCertSource loads (or issues) the server certificate as
// ServerCertificate does and returns its source. ca gives the CA at each
// call: after a CA rollover the certificate is reissued by the new one.
func NewServerCertSource(ca func() *CA, dir string, hosts []string) (*ServerCertSource, error) {
	s := &ServerCertSource{ca: ca, dir: dir, hosts: hosts}
	if _, err := s.Get(); err != nil {
		return nil, err
	}
	return s, nil
}

// Get returns the current server certificate, renewing it first when it
// is due or the issuing CA changed. A failed renewal keeps serving the
// current one while it is valid.
func (s *ServerCertSource) Get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ca := s.ca()
	now := ca.now()
	if s.cert != nil && s.issuer != nil && bytes.Equal(s.issuer.Raw, ca.Cert.Raw) && now.Before(s.cert.Leaf.NotAfter.Add(-serverRenewBefore)) {
		return s.cert, nil
	}
	c, err := ca.ServerCertificate(s.dir, s.hosts)
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			return s.cert, nil
		}
		return nil, err
	}
	s.cert, s.issuer = &c, ca.Cert
	return s.cert, nil
}
