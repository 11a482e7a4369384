package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testCert(t *testing.T, name string, isCA bool) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestSetTrust: a bundle the server sends replaces ca.pem only when it is
// CA certificates, within bounds, and keeps at least one CA trusted now.
func TestSetTrust(t *testing.T) {
	oldCA, nextCA, otherCA, leaf := testCert(t, "old", true), testCert(t, "next", true), testCert(t, "other", true), testCert(t, "leaf", false)
	cat := func(bs ...[]byte) []byte {
		return []byte(strings.Join(func() []string {
			var s []string
			for _, b := range bs {
				s = append(s, string(b))
			}
			return s
		}(), ""))
	}
	tests := []struct {
		name        string
		bundle      []byte
		wantChanged bool
		wantErr     string
	}{
		{"the same bundle", oldCA, false, ""},
		{"the next CA added", cat(oldCA, nextCA), true, ""},
		{"only another CA", otherCA, false, "none of the CAs trusted now"},
		{"a leaf certificate", cat(oldCA, leaf), false, "not a CA certificate"},
		{"garbage", []byte("not pem"), false, "want 1 to 8"},
		{"empty", nil, false, "want 1 to"},
		{"nine CAs", cat(oldCA, oldCA, oldCA, oldCA, oldCA, oldCA, oldCA, oldCA, oldCA), false, "want 1 to 8"},
		{"a key block", cat(oldCA, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}})), false, `a "EC PRIVATE KEY" block`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, caFile), oldCA, 0o644); err != nil {
				t.Fatal(err)
			}
			id := &Identity{dir: dir, caPEM: oldCA}
			before := id.TrustHash()
			changed, err := id.SetTrust(tt.bundle)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SetTrust = %v, %v; want an error containing %q", changed, err, tt.wantErr)
				}
			} else if err != nil || changed != tt.wantChanged {
				t.Fatalf("SetTrust = %v, %v; want changed %v", changed, err, tt.wantChanged)
			}
			onDisk, _ := os.ReadFile(filepath.Join(dir, caFile))
			want := oldCA
			if tt.wantChanged {
				want = tt.bundle
			}
			if string(onDisk) != string(want) || (string(id.TrustHash()) != string(before)) != tt.wantChanged {
				t.Errorf("ca.pem after SetTrust: %d bytes, hash changed %v; want %d bytes, changed %v", len(onDisk), string(id.TrustHash()) != string(before), len(want), tt.wantChanged)
			}
		})
	}
}

// FuzzParseBundle: whatever bundle the server sends, parsing it never
// panics, and what it accepts is 1 to 8 CA certificates.
func FuzzParseBundle(f *testing.F) {
	oldCA := testCert(&testing.T{}, "old", true)
	f.Add(oldCA)
	f.Add(append(append([]byte{}, oldCA...), testCert(&testing.T{}, "leaf", false)...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := parseBundle(b)
		if err != nil {
			return
		}
		if len(certs) == 0 || len(certs) > maxBundleCAs {
			t.Fatalf("accepted %d certificates", len(certs))
		}
		for _, c := range certs {
			if !c.IsCA {
				t.Fatalf("accepted %q, not a CA", c.Subject)
			}
		}
	})
}
