package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Evidence signing key files inside the pki directory.
const (
	signingCertFile = "evidence-signing.crt"
	signingKeyFile  = "evidence-signing.key"
)

// EvidenceSigner returns the key that signs evidence bundles and its
// certificate, issued by this CA. Both are created in dir (key 0600) on first
// use. The key is dedicated: the CA key only ever signs certificates, and the
// TLS server key is reissued whenever the server's names change, whereas an
// auditor should see the same signer across a year of bundles. The
// certificate lets a bundle be checked against the CA fingerprint agents
// already pin.
func (ca *CA) EvidenceSigner(dir string) (crypto.Signer, *x509.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, signingCertFile), filepath.Join(dir, signingKeyFile)
	var key *ecdsa.PrivateKey
	if cert, k, err := loadPair(certPath, keyPath); err == nil {
		if cert.CheckSignatureFrom(ca.Cert) == nil {
			return k, cert, nil
		}
		// Certified by a CA this one replaced (a rollover): the same key,
		// certified again, so a bundle still verifies with --pubkey, and
		// with the new CA's fingerprint.
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("evidence signing key %s is not ECDSA", keyPath)
		}
		key = ek
	} else if _, serr := os.Stat(keyPath); serr == nil {
		return nil, nil, fmt.Errorf("load evidence signing key: %w", err)
	} else if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "evident-server evidence signing", Organization: []string{"Evident"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     ca.Cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}
