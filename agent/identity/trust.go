package identity

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/evident-dev/evident/internal/atomicfile"
)

// Bounds of a trust bundle the server sends.
const (
	maxBundleBytes = 64 << 10
	maxBundleCAs   = 8
)

// TrustHash is the SHA-256 of the CA bundle the agent trusts (ca.pem), sent
// in Hello so the server sends its own when they differ.
func (id *Identity) TrustHash() []byte {
	id.mu.Lock()
	defer id.mu.Unlock()
	h := sha256.Sum256(id.caPEM)
	return h[:]
}

// SetTrust replaces the CA bundle the agent trusts for the server with the
// one the server sent over its authenticated stream or a renewal (a CA
// rollover adds the next CA, then drops the previous one). The bundle must
// hold 1 to 8 CA certificates, at least one of them trusted now: a rollover
// never replaces every CA at once. The next connection uses it. It reports
// whether the bundle changed.
func (id *Identity) SetTrust(bundle []byte) (bool, error) {
	if len(bundle) == 0 || len(bundle) > maxBundleBytes {
		return false, fmt.Errorf("trust bundle of %d bytes: want 1 to %d", len(bundle), maxBundleBytes)
	}
	certs, err := parseBundle(bundle)
	if err != nil {
		return false, err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if bytes.Equal(bundle, id.caPEM) {
		return false, nil
	}
	current, err := parseBundle(id.caPEM)
	if err != nil {
		return false, err
	}
	kept := false
	for _, c := range certs {
		for _, o := range current {
			kept = kept || bytes.Equal(c.Raw, o.Raw)
		}
	}
	if !kept {
		return false, errors.New("trust bundle refused: it holds none of the CAs trusted now")
	}
	if err := atomicfile.WriteFile(filepath.Join(id.dir, caFile), bundle, 0o644); err != nil {
		return false, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	id.ca, id.caPEM = pool, bytes.Clone(bundle)
	return true, nil
}

// parseBundle parses a PEM bundle of CA certificates.
func parseBundle(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("trust bundle: a %q block", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust bundle: %w", err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("trust bundle: %q is not a CA certificate", c.Subject)
		}
		out = append(out, c)
	}
	if len(out) == 0 || len(out) > maxBundleCAs {
		return nil, fmt.Errorf("trust bundle of %d CA certificates: want 1 to %d", len(out), maxBundleCAs)
	}
	return out, nil
}
