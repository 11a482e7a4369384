package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRollover walks a CA rollover on a moving clock: the next CA is
// trusted as soon as it is staged, takes over (issuing the server's and new
// device certificates) at its time, and the previous one stays trusted for
// the certificates it issued until they have all expired; a second
// rollover is refused while one is in progress. The evidence signing key
// survives it, certified again by the new CA.
func TestRollover(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a, err := NewAuthority(dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	old := a.Current().Cert
	signerKey, _, err := a.Current().EvidenceSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	oldDevice, err := a.Current().SignDevice(csr, NewDeviceID())
	if err != nil {
		t.Fatal(err)
	}
	// current reads the CA as the server does after its reload interval.
	current := func() *CA {
		a.mu.Lock()
		a.checked = time.Time{}
		a.mu.Unlock()
		return a.Current()
	}
	verifies := func(ca *CA, der []byte) bool {
		c, _ := x509.ParseCertificate(der)
		_, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err == nil
	}

	next, r, err := Rotate(dir, now, 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Rotate(dir, now, time.Hour); err == nil || !strings.Contains(err.Error(), "already staged") {
		t.Errorf("second rotate: %v", err)
	}
	steps := []struct {
		at         time.Duration
		issuer     *x509.Certificate
		trusted    int
		oldDevices bool // certificates of the old CA still verify
	}{
		{0, old, 2, true}, // staged: both trusted, the old one issues
		{10*24*time.Hour - time.Second, old, 2, true},
		{10 * 24 * time.Hour, next, 2, true},   // takeover
		{100 * 24 * time.Hour, next, 2, true},  // the old CA's last certificates live 90 days
		{101 * 24 * time.Hour, next, 1, false}, // retired
	}
	start := now
	for _, s := range steps {
		now = start.Add(s.at)
		ca := current()
		if !bytes.Equal(ca.Cert.Raw, s.issuer.Raw) || len(ca.Trusted()) != s.trusted {
			t.Fatalf("day %.0f: issuer %s, %d trusted; want %s, %d", s.at.Hours()/24, Fingerprint(ca.Cert.Raw)[:8], len(ca.Trusted()), Fingerprint(s.issuer.Raw)[:8], s.trusted)
		}
		if got := verifies(ca, oldDevice); got != s.oldDevices && now.Before(start.Add(DefaultDeviceCertTTL)) {
			t.Errorf("day %.0f: a device certificate of the old CA verifies: %v, want %v", s.at.Hours()/24, got, s.oldDevices)
		}
		if b, err := parsePEMCerts(ca.PEM()); err != nil || len(b) != s.trusted || !bytes.Equal(b[0].Raw, s.issuer.Raw) {
			t.Errorf("day %.0f: bundle of %d certificates (%v), want %d with the issuing CA first", s.at.Hours()/24, len(b), err, s.trusted)
		}
		fresh, err := ca.SignDevice(csr, NewDeviceID())
		if err != nil || !verifies(ca, fresh) {
			t.Errorf("day %.0f: a new device certificate does not verify: %v", s.at.Hours()/24, err)
		}
		srv, err := ca.ServerCertificate(dir, []string{"localhost"})
		if err != nil || srv.Leaf.CheckSignatureFrom(s.issuer) != nil {
			t.Errorf("day %.0f: server certificate not issued by the issuing CA: %v", s.at.Hours()/24, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, prevKeyFile)); !os.IsNotExist(err) {
		t.Errorf("the retired CA's key is still there: %v", err)
	}
	if r2, _ := readRollover(dir); r2.InProgress() {
		t.Errorf("rollover still in progress after retirement: %+v (started %+v)", r2, r)
	}
	k, cert, err := current().EvidenceSigner(dir)
	if err != nil || cert.CheckSignatureFrom(next) != nil || !k.(*ecdsa.PrivateKey).Equal(signerKey) {
		t.Errorf("evidence signer after the rollover: %v; want the same key certified by the new CA", err)
	}
	if _, _, err := Rotate(dir, now, 0); err == nil {
		t.Error("a rollover without overlap was accepted")
	}
}

// TestTakeoverInterrupted: a takeover cut short after any of its renames is
// finished by the next start, never undone or repeated over the new CA,
// and nothing creates a fresh CA in a directory left half-way.
func TestTakeoverInterrupted(t *testing.T) {
	moves := [][2]string{{caCertFile, prevCertFile}, {caKeyFile, prevKeyFile}, {nextCertFile, caCertFile}, {nextKeyFile, caKeyFile}}
	for done := 1; done <= len(moves); done++ {
		t.Run(fmt.Sprintf("after %d renames", done), func(t *testing.T) {
			dir := t.TempDir()
			now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
			a, err := NewAuthority(dir, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			old := a.Current().Cert
			next, _, err := Rotate(dir, now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for _, mv := range moves[:done] {
				if err := os.Rename(filepath.Join(dir, mv[0]), filepath.Join(dir, mv[1])); err != nil {
					t.Fatal(err)
				}
			}
			if done < 3 { // ca.crt is missing: nothing may create a CA here
				if _, err := LoadOrCreateWithClock(dir, func() time.Time { return now }); err == nil || !strings.Contains(err.Error(), "interrupted CA rollover") {
					t.Fatalf("LoadOrCreate over a half-done takeover: %v", err)
				}
			}
			now = now.Add(2 * time.Hour)
			b, err := NewAuthority(dir, func() time.Time { return now })
			if err != nil {
				t.Fatalf("start after the interruption: %v", err)
			}
			ca := b.Current()
			if !ca.Cert.Equal(next) || len(ca.Trusted()) != 2 || !ca.Trusted()[1].Equal(old) {
				t.Fatalf("after finishing: issuer %s, trusted %d", ca.Cert.Subject, len(ca.Trusted()))
			}
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			if _, err := ca.SignDevice(csr, NewDeviceID()); err != nil {
				t.Fatalf("the new CA's key does not sign: %v", err)
			}
			for _, f := range []string{nextCertFile, nextKeyFile} {
				if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", f, err)
				}
			}
		})
	}
}
