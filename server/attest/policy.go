package attest

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// MaxPolicyFiles bounds the number of files LoadEKPolicy reads from the roots
// directory; MaxFileSize bounds each of them and the allowlist.
const MaxPolicyFiles = 1024

// EKPolicy decides which endorsement keys the server trusts: an EK whose
// certificate chains to Roots (through Intermediates), or whose public key's
// SHA-256 is in AllowedEKs.
type EKPolicy struct {
	Roots         *x509.CertPool    // manufacturer root CAs; nil = none
	Intermediates *x509.CertPool    // manufacturer intermediate CAs; may be nil
	AllowedEKs    map[[32]byte]bool // SHA-256 of EK public PKIX DER
}

// LoadEKPolicy reads every PEM or DER certificate file in rootsDir (a
// self-signed certificate is a root, any other an intermediate) and an
// allowlist file of hex SHA-256 hashes of EK public keys (PKIX DER), one per
// line, with '#' comments and blank lines. Either may be "". Files are read
// up to MaxFileSize bytes, at most MaxPolicyFiles of them; subdirectories and
// dot files in rootsDir are skipped. Errors name the file (and line).
func LoadEKPolicy(rootsDir, allowlistFile string) (*EKPolicy, error) {
	pol := &EKPolicy{AllowedEKs: map[[32]byte]bool{}}
	if rootsDir != "" {
		entries, err := os.ReadDir(rootsDir)
		if err != nil {
			return nil, fmt.Errorf("EK roots: %w", err)
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		n := 0
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if n++; n > MaxPolicyFiles {
				return nil, fmt.Errorf("EK roots: %s holds more than %d files", rootsDir, MaxPolicyFiles)
			}
			path := filepath.Join(rootsDir, e.Name())
			data, err := ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("EK roots: %w", err)
			}
			certs, err := parseCertificates(data)
			if err != nil {
				return nil, fmt.Errorf("EK roots: %s: %w", path, err)
			}
			for _, c := range certs {
				if isSelfSigned(c) {
					if pol.Roots == nil {
						pol.Roots = x509.NewCertPool()
					}
					pol.Roots.AddCert(c)
				} else {
					if pol.Intermediates == nil {
						pol.Intermediates = x509.NewCertPool()
					}
					pol.Intermediates.AddCert(c)
				}
			}
		}
	}
	if allowlistFile != "" {
		data, err := ReadFile(allowlistFile)
		if err != nil {
			return nil, fmt.Errorf("EK allowlist: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 4096), MaxFileSize+1)
		for line := 1; sc.Scan(); line++ {
			s := sc.Text()
			if i := strings.IndexByte(s, '#'); i >= 0 {
				s = s[:i]
			}
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			b, err := hex.DecodeString(s)
			if err != nil || len(b) != 32 {
				return nil, fmt.Errorf("%w: EK allowlist %s line %d: want 64 hex digits (SHA-256 of the EK public key, PKIX DER)", ErrMalformed, allowlistFile, line)
			}
			pol.AllowedEKs[[32]byte(b)] = true
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("EK allowlist %s: %w", allowlistFile, err)
		}
	}
	return pol, nil
}

// parseCertificates parses one DER certificate or any number of PEM
// CERTIFICATE blocks (other PEM blocks are an error: a key in a roots
// directory is a mistake worth reporting).
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%w: not a PEM or DER certificate: %v", ErrMalformed, err)
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	rest := trimmed
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block %q, want CERTIFICATE", ErrMalformed, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %v", ErrMalformed, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: unparseable PEM", ErrMalformed)
	}
	return out, nil
}

// isSelfSigned reports whether c is signed by its own key under its own name.
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}
