package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// policyCert returns a DER certificate for name, self-signed when parent is
// nil, with its key.
func policyCert(t *testing.T, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return der, c, key
}

func TestLoadEKPolicy(t *testing.T) {
	rootDER, root, rootKey := policyCert(t, "Root A", nil, nil)
	root2DER, _, _ := policyCert(t, "Root B", nil, nil)
	interDER, _, _ := policyCert(t, "Intermediate", root, rootKey)
	pemOf := func(ders ...[]byte) []byte {
		var b []byte
		for _, d := range ders {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
		}
		return b
	}
	h1, h2 := sha256.Sum256([]byte("ek1")), sha256.Sum256([]byte("ek2"))

	type files map[string][]byte
	tests := []struct {
		name            string
		roots           files // nil: no roots dir
		allow           string
		noAllow         bool
		wantErr         string // substring; "" = success
		nRoots, nInters int
		allowed         [][32]byte
	}{
		{name: "PEM bundle of two roots", roots: files{"roots.pem": pemOf(rootDER, root2DER)}, noAllow: true, nRoots: 2},
		{name: "DER root and PEM intermediate", roots: files{"a.der": rootDER, "b.crt": pemOf(interDER), ".hidden": []byte("x")}, noAllow: true, nRoots: 1, nInters: 1},
		{name: "bad file named", roots: files{"a.der": rootDER, "junk.pem": []byte("not a certificate")}, noAllow: true, wantErr: "junk.pem"},
		{name: "PEM key refused", roots: files{"k.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})}, noAllow: true, wantErr: `"PRIVATE KEY"`},
		{name: "oversize file", roots: files{"big.pem": make([]byte, MaxFileSize+1)}, noAllow: true, wantErr: "big.pem is larger"},
		{name: "allowlist with comments", allow: "# EKs of the lab machines\n\n" + hex.EncodeToString(h1[:]) + "  # laptop-1\n  " + strings.ToUpper(hex.EncodeToString(h2[:])) + "\n", allowed: [][32]byte{h1, h2}},
		{name: "bad hex line named", allow: "# ok\n" + hex.EncodeToString(h1[:]) + "\nzz" + hex.EncodeToString(h2[1:]) + "\n", wantErr: "line 3"},
		{name: "short hash line named", allow: "abcd\n", wantErr: "line 1"},
		{name: "neither", noAllow: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rootsDir, allowFile := "", ""
			if tc.roots != nil {
				rootsDir = filepath.Join(dir, "roots")
				if err := os.Mkdir(rootsDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(filepath.Join(rootsDir, "subdir"), 0o755); err != nil {
					t.Fatal(err)
				}
				for n, b := range tc.roots {
					if err := os.WriteFile(filepath.Join(rootsDir, n), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !tc.noAllow {
				allowFile = filepath.Join(dir, "allow.txt")
				if err := os.WriteFile(allowFile, []byte(tc.allow), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			pol, err := LoadEKPolicy(rootsDir, allowFile)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			count := func(p *x509.CertPool) int {
				if p == nil {
					return 0
				}
				//nolint:staticcheck // Subjects is fine for pools built from certificates.
				return len(p.Subjects())
			}
			if count(pol.Roots) != tc.nRoots || count(pol.Intermediates) != tc.nInters {
				t.Errorf("%d roots, %d intermediates; want %d, %d", count(pol.Roots), count(pol.Intermediates), tc.nRoots, tc.nInters)
			}
			if len(pol.AllowedEKs) != len(tc.allowed) {
				t.Errorf("allowlist %v, want %v", pol.AllowedEKs, tc.allowed)
			}
			for _, h := range tc.allowed {
				if !pol.AllowedEKs[h] {
					t.Errorf("%x not allowed", h)
				}
			}
		})
	}
	if _, err := LoadEKPolicy(filepath.Join(t.TempDir(), "missing"), ""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := LoadEKPolicy("", filepath.Join(t.TempDir(), "missing.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing allowlist: %v", err)
	}
}

// FuzzCheckTPMIdentity feeds hostile enrollment requests (what any holder
// of an enrollment token can send) to the EK and AK checks: they must
// refuse with one of the sentinels, never panic, and never accept garbage.
func FuzzCheckTPMIdentity(f *testing.F) {
	s := newSoftTPM(f)
	ekKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	ekPub, err := x509.MarshalPKIXPublicKey(&ekKey.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ekPub, []byte{}, s.akPublic, []byte{}, []byte{}, []byte{})
	f.Add(ekPub[:40], []byte{0x30, 0x82, 0x01}, s.akPublic[:20], []byte{0, 1}, []byte{0xff, 0x54, 0x43, 0x47}, []byte{0, 0x14})
	f.Add([]byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{})
	sum := sha256.Sum256(ekPub)
	pol := &EKPolicy{AllowedEKs: map[[32]byte]bool{sum: true}}
	f.Fuzz(func(t *testing.T, ek, cert, akPub, createData, createAttest, createSig []byte) {
		id := &evidentv1.TPMIdentity{EkPub: ek, EkCert: cert, Ak: &evidentv1.AKParameters{Public: akPub,
			CreateData: createData, CreateAttestation: createAttest, CreateSignature: createSig}}
		got, err := CheckTPMIdentity(id, pol)
		if err == nil {
			// Only a real creation signature by the AK over real creation
			// data could pass, and the fuzzer has neither.
			t.Fatalf("accepted a fuzzed identity: %+v", got)
		}
		n := 0
		for _, e := range []error{ErrMalformed, ErrEKUntrusted, ErrAKAttributes, ErrAKCreation} {
			if errors.Is(err, e) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %q wraps %d sentinels, want exactly one", err, n)
		}
	})
}
