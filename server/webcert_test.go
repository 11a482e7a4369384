package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 named cn and its key.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), cert
}

// TestWebCertificateReloads: the web UI serves the organisation's
// certificate, a renewed pair replaces it on the next connection without
// a restart, and a pair that does not load keeps the last good one in
// service (logged once); a server does not start on a bad pair.
func TestWebCertificateReloads(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "web.pem"), filepath.Join(dir, "web.key")
	write := func(cert, key []byte, at time.Time) {
		t.Helper()
		for p, b := range map[string][]byte{certPath: cert, keyPath: key} {
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, at, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	certA, keyA, leafA := selfSigned(t, "evident.corp.example (A)")
	certB, keyB, leafB := selfSigned(t, "evident.corp.example (B)")
	t0 := time.Now().Add(-time.Hour)

	if _, err := loadCertFiles(certPath, keyPath, slog.Default()); err == nil {
		t.Error("missing files: the server would start")
	}
	write(certA, keyB, t0)
	if _, err := loadCertFiles(certPath, keyPath, slog.Default()); err == nil || !strings.Contains(err.Error(), "--web-cert") {
		t.Errorf("a key that does not match: %v", err)
	}

	write(certA, keyA, t0)
	var logged bytes.Buffer
	files, err := loadCertFiles(certPath, keyPath, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// As startWeb serves it: the listener's configuration has only
	// GetCertificate.
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: files.Get})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go http.Serve(lis, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	addr := lis.Addr().String()
	served := func() *x509.Certificate {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	if got := served(); !got.Equal(leafA) {
		t.Fatalf("served %s, want A", got.Subject)
	}

	write(certB, keyB, t0.Add(time.Minute)) // renewed in place
	if got := served(); !got.Equal(leafB) {
		t.Fatalf("after the renewal, served %s; want B without a restart", got.Subject)
	}
	write(certA, keyB, t0.Add(2*time.Minute)) // a botched renewal
	for range 3 {
		if got := served(); !got.Equal(leafB) {
			t.Fatalf("a pair that does not load: served %s, want B still", got.Subject)
		}
	}
	if n := strings.Count(logged.String(), "do not load"); n != 1 {
		t.Errorf("the botched pair was logged %d times, want once:\n%s", n, logged.String())
	}
	// A browser that trusts the organisation's CA (here, B itself) is
	// served without a warning.
	pool := x509.NewCertPool()
	pool.AddCert(leafB)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + addr)
	if err != nil {
		t.Fatalf("a client trusting B: %v", err)
	}
	resp.Body.Close()
}
