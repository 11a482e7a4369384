package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// newCA creates a CA in a fresh directory. Its clock is pinned to one hour
// after the CA's own NotBefore, so issued certificates and verification times
// are derived from the CA, never from the wall clock.
func newCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	pinClock(ca, ca.Cert.NotBefore.Add(2*time.Hour))
	return ca, dir
}

func pinClock(ca *CA, at time.Time) { ca.now = func() time.Time { return at } }

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate (create): %v", err)
	}
	if !ca.Cert.IsCA {
		t.Errorf("created certificate is not a CA")
	}
	if ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA key usage %v lacks CertSign", ca.Cert.KeyUsage)
	}
	for name, want := range map[string]os.FileMode{"ca.key": 0o600, "ca.crt": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", name, got, want)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v, mode %o, want 0700", err, fi.Mode().Perm())
	}
	if fp := ca.Fingerprint(); len(fp) != 64 || fp != Fingerprint(ca.Cert.Raw) {
		t.Errorf("Fingerprint() = %q, want 64 hex characters of the DER SHA-256", fp)
	}
	if !bytes.Contains(ca.PEM(), []byte("BEGIN CERTIFICATE")) {
		t.Errorf("PEM() = %q, want a PEM certificate", ca.PEM())
	}

	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate (reload): %v", err)
	}
	if again.Fingerprint() != ca.Fingerprint() {
		t.Errorf("reloaded CA fingerprint %s, want the created %s", again.Fingerprint(), ca.Fingerprint())
	}

	// A different directory is a different CA.
	other, err := LoadOrCreate(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Fingerprint() == ca.Fingerprint() {
		t.Errorf("two fresh CAs share fingerprint %s", ca.Fingerprint())
	}
}

func TestLoadOrCreateErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr string
	}{
		{name: "key missing", prepare: func(t *testing.T, dir string) {
			mustRemove(t, filepath.Join(dir, "ca.key"))
		}, wantErr: "load CA"},
		{name: "cert not PEM", prepare: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, "ca.crt"), []byte("not a certificate"))
		}, wantErr: "not PEM"},
		{name: "key not PEM", prepare: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, "ca.key"), []byte("garbage"))
		}, wantErr: "not PEM"},
		{name: "leaf instead of CA", prepare: func(t *testing.T, dir string) {
			// Replace the CA pair with the server leaf pair.
			ca, err := LoadOrCreate(dir)
			if err != nil {
				t.Fatal(err)
			}
			pinClock(ca, ca.Cert.NotBefore.Add(2*time.Hour))
			if _, err := ca.ServerCertificate(dir, []string{"localhost"}); err != nil {
				t.Fatal(err)
			}
			mustRename(t, filepath.Join(dir, "server.crt"), filepath.Join(dir, "ca.crt"))
			mustRename(t, filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.key"))
		}, wantErr: "not a CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			tt.prepare(t, dir)
			_, err := LoadOrCreate(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadOrCreate = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestServerCertificate(t *testing.T) {
	ca, dir := newCA(t)
	hosts := []string{"evident.example.com", "localhost", "127.0.0.1", "::1"}
	c1, err := ca.ServerCertificate(dir, hosts)
	if err != nil {
		t.Fatalf("ServerCertificate: %v", err)
	}
	leaf := c1.Leaf
	if leaf == nil {
		t.Fatal("Leaf is nil")
	}
	if !slices.Equal(leaf.DNSNames, []string{"evident.example.com", "localhost"}) {
		t.Errorf("DNSNames = %v", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", leaf.IPAddresses)
	}
	if len(c1.Certificate) != 2 || !bytes.Equal(c1.Certificate[1], ca.Cert.Raw) {
		t.Errorf("chain has %d certificates, want leaf + CA", len(c1.Certificate))
	}
	for _, h := range hosts {
		_, err := leaf.Verify(x509.VerifyOptions{
			DNSName: h, Roots: ca.Pool(), CurrentTime: ca.now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("verify server certificate for %s: %v", h, err)
		}
	}
	if err := leaf.VerifyHostname("other.example.com"); err == nil {
		t.Errorf("certificate also covers other.example.com")
	}
	if fi, err := os.Stat(filepath.Join(dir, "server.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key: %v, want mode 0600", err)
	}

	// Same hosts (or a subset): the stored certificate is reused.
	for _, hs := range [][]string{hosts, {"localhost"}, nil} {
		c, err := ca.ServerCertificate(dir, hs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.Leaf.Raw, leaf.Raw) {
			t.Errorf("hosts %v: certificate reissued, want the stored one reused", hs)
		}
	}

	// A new host: reissued, covering it.
	c2, err := ca.ServerCertificate(dir, []string{"localhost", "10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c2.Leaf.Raw, leaf.Raw) {
		t.Fatalf("new host 10.0.0.7: certificate not reissued")
	}
	if err := c2.Leaf.VerifyHostname("10.0.0.7"); err != nil {
		t.Errorf("reissued certificate: %v", err)
	}

	// Close to expiry: reissued.
	pinClock(ca, c2.Leaf.NotAfter.Add(-10*24*time.Hour))
	c3, err := ca.ServerCertificate(dir, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c3.Leaf.Raw, c2.Leaf.Raw) {
		t.Errorf("certificate expiring in 10 days not reissued")
	}

	// Signed by another CA (e.g. the CA was replaced): reissued.
	other, _ := newCA(t)
	c4, err := other.ServerCertificate(dir, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c4.Leaf.CheckSignatureFrom(other.Cert); err != nil {
		t.Errorf("certificate signed by a previous CA was reused: %v", err)
	}
}

func csrDER(t *testing.T, key crypto.Signer, cn string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const testDeviceID = "dev_0123456789abcdef0123456789abcdef"

func TestSignDevice(t *testing.T) {
	ca, _ := newCA(t)
	key := ecKey(t, elliptic.P256())
	der, err := ca.SignDevice(csrDER(t, key, "laptop-1"), testDeviceID)
	if err != nil {
		t.Fatalf("SignDevice: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "evident://device/"+testDeviceID {
		t.Errorf("URIs = %v, want [evident://device/%s]", cert.URIs, testDeviceID)
	}
	if cert.Subject.CommonName != testDeviceID {
		t.Errorf("subject CN = %q, want the device id (not the CSR's laptop-1)", cert.Subject.CommonName)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want [ClientAuth]", cert.ExtKeyUsage)
	}
	if cert.IsCA {
		t.Errorf("device certificate is a CA")
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Errorf("certificate key is not the CSR key")
	}
	if got, want := cert.NotAfter.Sub(ca.now()), ca.DeviceCertTTL; got != want {
		t.Errorf("lifetime from now = %s, want %s", got, want)
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: ca.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Errorf("verify device certificate against the CA: %v", err)
	}
	id, err := DeviceID(cert)
	if err != nil || id != testDeviceID {
		t.Errorf("DeviceID = %q, %v; want %q", id, err, testDeviceID)
	}

	// Another CA's pool must not verify it.
	other, _ := newCA(t)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool(), CurrentTime: ca.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Errorf("device certificate verifies against an unrelated CA")
	}
}

func TestSignDeviceRejects(t *testing.T) {
	ca, _ := newCA(t)
	good := csrDER(t, ecKey(t, elliptic.P256()), "host-aaaa")

	// Broken signature: change a byte of the signed subject, keep the DER
	// structure intact.
	i := bytes.Index(good, []byte("host-aaaa"))
	if i < 0 {
		t.Fatal("CN not found in CSR DER")
	}
	tampered := bytes.Clone(good)
	tampered[i+len("host-")] = 'b'
	if _, err := x509.ParseCertificateRequest(tampered); err != nil {
		t.Fatalf("tampered CSR must still parse to exercise the signature check: %v", err)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		csr     []byte
		id      string
		wantErr string
	}{
		{name: "device id not issued by this server", csr: good, id: "dev_nope", wantErr: "not one this server issues"},
		{name: "device id with a path", csr: good, id: "../" + testDeviceID, wantErr: "not one this server issues"},
		{name: "empty", csr: nil, wantErr: "parse CSR"},
		{name: "garbage", csr: []byte("not a CSR"), wantErr: "parse CSR"},
		{name: "truncated", csr: good[:len(good)/2], wantErr: "parse CSR"},
		{name: "a certificate, not a CSR", csr: ca.Cert.Raw, wantErr: "parse CSR"},
		{name: "broken signature", csr: tampered, wantErr: "CSR signature"},
		{name: "RSA key", csr: csrDER(t, rsaKey, "rsa"), wantErr: "unsupported key type"},
		{name: "P-224 key", csr: csrDER(t, ecKey(t, elliptic.P224()), "p224"), wantErr: "at least P-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			if id == "" {
				id = testDeviceID
			}
			der, err := ca.SignDevice(tt.csr, id)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SignDevice = %d bytes, %v; want error containing %q", len(der), err, tt.wantErr)
			}
			if der != nil {
				t.Errorf("SignDevice returned a certificate alongside an error")
			}
		})
	}
}

func TestDeviceID(t *testing.T) {
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name    string
		uris    []string
		want    string
		wantErr bool
	}{
		{name: "one device uri", uris: []string{"evident://device/" + testDeviceID}, want: testDeviceID},
		{name: "after another uri", uris: []string{"spiffe://example.org/x", "evident://device/" + testDeviceID}, want: testDeviceID},
		{name: "no uri", wantErr: true},
		{name: "other scheme", uris: []string{"spiffe://device/" + testDeviceID}, wantErr: true},
		{name: "malformed id", uris: []string{"evident://device/dev_xyz"}, wantErr: true},
		{name: "id with extra path", uris: []string{"evident://device/" + testDeviceID + "/x"}, wantErr: true},
		{name: "other host", uris: []string{"evident://admin/" + testDeviceID}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := &x509.Certificate{}
			for _, s := range tt.uris {
				cert.URIs = append(cert.URIs, mustURL(s))
			}
			got, err := DeviceID(cert)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("DeviceID = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DeviceID = %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	// The CA certificate itself carries no device id.
	ca, _ := newCA(t)
	if id, err := DeviceID(ca.Cert); err == nil {
		t.Errorf("DeviceID(CA certificate) = %q, want an error", id)
	}
}

func TestValidDeviceID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{testDeviceID, true},
		{"dev_" + strings.ToUpper("0123456789abcdef0123456789abcdef"), true}, // hex accepts upper case
		{"", false},
		{"dev_", false},
		{"dev_0123456789abcdef0123456789abcde", false},   // 31 hex
		{"dev_0123456789abcdef0123456789abcdef0", false}, // 33 hex
		{"dev_0123456789abcdef0123456789abcdeg", false},  // not hex
		{"xyz_0123456789abcdef0123456789abcdef", false},
		{"0123456789abcdef0123456789abcdef0123", false},
		{"dev_0123456789abcdef0123456789abcd/f", false},
		{"dev_0123456789abcdef0123456789abcd f", false},
	}
	for _, tt := range tests {
		if got := ValidDeviceID(tt.id); got != tt.want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
	for range 10 {
		if id := NewDeviceID(); !ValidDeviceID(id) {
			t.Errorf("NewDeviceID() = %q is not valid", id)
		}
	}
	if NewDeviceID() == NewDeviceID() {
		t.Errorf("NewDeviceID repeats")
	}
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func TestServerCertificateIgnoresEmptyHost(t *testing.T) {
	ca, dir := newCA(t)
	first, err := ca.ServerCertificate(dir, []string{"localhost", ""})
	if err != nil {
		t.Fatal(err)
	}
	second, err := ca.ServerCertificate(dir, []string{"", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatalf("an empty host name made the server certificate be reissued on every start")
	}
}
