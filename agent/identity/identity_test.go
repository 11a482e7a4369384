package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent/identity"
)

var serial int64

// testCA is a CA that issues certificates in tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := newKey(t)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pin() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// issue returns a leaf for the given SANs, valid until notAfter.
func (ca *testCA) issue(t *testing.T, usage x509.ExtKeyUsage, notAfter time.Time, dns []string, ips ...net.IP) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// serveTLS accepts TLS connections on loopback with cert and completes
// their handshakes until the test ends; it returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return lis.Addr().String()
}

func handshake(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func TestPinnedTLS(t *testing.T) {
	ca := newCA(t, "evident CA")
	rogue := newCA(t, "rogue CA")
	loopback := net.ParseIP("127.0.0.1")
	later := time.Now().Add(time.Hour)

	good, goodKey := ca.issue(t, x509.ExtKeyUsageServerAuth, later, []string{"localhost"}, loopback)
	otherHost, otherKey := ca.issue(t, x509.ExtKeyUsageServerAuth, later, []string{"evident.example"})
	forged, forgedKey := rogue.issue(t, x509.ExtKeyUsageServerAuth, later, []string{"localhost"}, loopback)
	expired, expiredKey := ca.issue(t, x509.ExtKeyUsageServerAuth, time.Now().Add(-time.Minute), nil, loopback)
	clientOnly, clientKey := ca.issue(t, x509.ExtKeyUsageClientAuth, later, nil, loopback)

	chain := func(leaf *x509.Certificate, key *ecdsa.PrivateKey, rest ...*x509.Certificate) tls.Certificate {
		c := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
		for _, r := range rest {
			c.Certificate = append(c.Certificate, r.Raw)
		}
		return c
	}
	tests := []struct {
		name    string
		server  tls.Certificate
		host    string
		pin     string
		wantErr string // substring; "" means the handshake succeeds
	}{
		{name: "pin matches", server: chain(good, goodKey, ca.cert), host: "127.0.0.1", pin: ca.pin()},
		{name: "pin matches, DNS name", server: chain(good, goodKey, ca.cert), host: "localhost", pin: ca.pin()},
		{name: "wrong pin", server: chain(good, goodKey, ca.cert), host: "127.0.0.1", pin: rogue.pin(),
			wantErr: "does not contain the CA pinned"},
		{name: "server sends no CA", server: chain(good, goodKey), host: "127.0.0.1", pin: ca.pin(),
			wantErr: "does not contain the CA pinned"},
		{name: "leaf not valid for the host", server: chain(otherHost, otherKey, ca.cert), host: "127.0.0.1", pin: ca.pin(),
			wantErr: "does not verify against the pinned CA"},
		{name: "leaf of another CA with the pinned CA appended", server: chain(forged, forgedKey, ca.cert), host: "127.0.0.1", pin: ca.pin(),
			wantErr: "does not verify against the pinned CA"},
		{name: "expired leaf", server: chain(expired, expiredKey, ca.cert), host: "127.0.0.1", pin: ca.pin(),
			wantErr: "does not verify against the pinned CA"},
		{name: "leaf not for servers", server: chain(clientOnly, clientKey, ca.cert), host: "127.0.0.1", pin: ca.pin(),
			wantErr: "does not verify against the pinned CA"},
		{name: "empty pin", server: chain(good, goodKey, ca.cert), host: "127.0.0.1", pin: "",
			wantErr: "does not contain the CA pinned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{tt.server}})
			err := handshake(t, addr, identity.PinnedTLS(tt.host, tt.pin))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("handshake err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadNotEnrolled(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		if id, err := identity.Load(dir); !errors.Is(err, identity.ErrNotEnrolled) {
			t.Errorf("Load(%s) = %v, %v; want ErrNotEnrolled", dir, id, err)
		}
	}
}

// writeIdentity writes the files Enroll leaves behind, with the named ones
// replaced by content.
func writeIdentity(t *testing.T, dir string, ca *testCA, override map[string]string) *x509.Certificate {
	t.Helper()
	leaf, key := ca.issue(t, x509.ExtKeyUsageClientAuth, time.Now().Add(24*time.Hour).Truncate(time.Second), nil)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	state, _ := json.Marshal(map[string]any{"device_id": "dev-1", "server": "127.0.0.1:8443", "ca_sha256": ca.pin()})
	files := map[string]string{
		"device.key":      string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})),
		"device.crt":      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
		"ca.pem":          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})),
		"enrollment.json": string(state),
	}
	for k, v := range override {
		files[k] = v
	}
	for name, content := range files {
		if content == "-" {
			continue // "-" leaves the file out
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return leaf
}

func TestLoadBroken(t *testing.T) {
	ca := newCA(t, "evident CA")
	tests := []struct {
		name     string
		override map[string]string
	}{
		{name: "state is not JSON", override: map[string]string{"enrollment.json": "{"}},
		{name: "no certificate", override: map[string]string{"device.crt": "-"}},
		{name: "key does not match", override: map[string]string{"device.key": string(func() []byte {
			b, _ := x509.MarshalECPrivateKey(newKey(t))
			return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b})
		}())}},
		{name: "no CA bundle", override: map[string]string{"ca.pem": "-"}},
		{name: "empty CA bundle", override: map[string]string{"ca.pem": "not pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeIdentity(t, dir, ca, tt.override)
			id, err := identity.Load(dir)
			if err == nil {
				t.Fatalf("Load = %+v, want an error", id)
			}
			if errors.Is(err, identity.ErrNotEnrolled) {
				t.Errorf("err = %v: a broken identity is not the same as none", err)
			}
		})
	}
}

// A loaded identity authenticates to a server that trusts the CA, and
// trusts that server only through the CA bundle.
func TestLoadTLSConfig(t *testing.T) {
	ca := newCA(t, "evident CA")
	dir := t.TempDir()
	leaf := writeIdentity(t, dir, ca, nil)
	id, err := identity.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id.DeviceID != "dev-1" || id.Server != "127.0.0.1:8443" || id.CAPin != ca.pin() {
		t.Errorf("identity = %+v", id)
	}
	if !id.CertExpiry().Equal(leaf.NotAfter) {
		t.Errorf("CertExpiry = %v, want %v", id.CertExpiry(), leaf.NotAfter)
	}
	cfg, err := id.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "127.0.0.1" {
		t.Errorf("ServerName = %q", cfg.ServerName)
	}

	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)
	srvCert, srvKey := ca.issue(t, x509.ExtKeyUsageServerAuth, time.Now().Add(time.Hour), nil, net.ParseIP("127.0.0.1"))
	rogue := newCA(t, "rogue")
	rogueCert, rogueKey := rogue.issue(t, x509.ExtKeyUsageServerAuth, time.Now().Add(time.Hour), nil, net.ParseIP("127.0.0.1"))
	tests := []struct {
		name    string
		cert    *x509.Certificate
		key     *ecdsa.PrivateKey
		wantErr bool
	}{
		{name: "server of the CA", cert: srvCert, key: srvKey},
		{name: "server of another CA", cert: rogueCert, key: rogueKey, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotClient := make(chan []*x509.Certificate, 1)
			addr := serveTLS(t, &tls.Config{
				Certificates: []tls.Certificate{{Certificate: [][]byte{tt.cert.Raw}, PrivateKey: tt.key}},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    clientCAs,
				VerifyConnection: func(cs tls.ConnectionState) error {
					gotClient <- cs.PeerCertificates
					return nil
				},
			})
			err := handshake(t, addr, cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("handshake err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			select {
			case pc := <-gotClient:
				if len(pc) == 0 || !pc[0].Equal(leaf) {
					t.Errorf("server saw client certificates %v, want the device certificate", pc)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("server never verified the client")
			}
		})
	}

	id.Server = "no-port"
	if _, err := id.TLSConfig(); err == nil {
		t.Error("TLSConfig with a server address without a port succeeded")
	}
	id.Server = "127.0.0.1:8443,a.example:1"
	if cfg, err := id.TLSConfig(); err != nil || cfg.ServerName != "" {
		t.Errorf("TLSConfig with two servers: ServerName %q, %v; want none (gRPC names each address's host)", cfg.ServerName, err)
	}
	id.Server = "127.0.0.1:8443,"
	if _, err := id.TLSConfig(); err == nil || !strings.Contains(err.Error(), "address 2") {
		t.Errorf("TLSConfig with an empty entry: %v; want it named", err)
	}
}

// PinnedCredentials verify each server for the host gRPC dials it by (the
// handshake's authority), so one enrollment can go to any replica of a
// list whose certificates name only their own host.
func TestPinnedCredentialsVerifyTheDialledHost(t *testing.T) {
	ca := newCA(t, "evident CA")
	later := time.Now().Add(time.Hour)
	byIP, byIPKey := ca.issue(t, x509.ExtKeyUsageServerAuth, later, nil, net.ParseIP("127.0.0.1"))
	byName, byNameKey := ca.issue(t, x509.ExtKeyUsageServerAuth, later, []string{"localhost"})
	serve := func(leaf *x509.Certificate, key *ecdsa.PrivateKey) string {
		_, port, _ := net.SplitHostPort(serveTLS(t, &tls.Config{NextProtos: []string{"h2"},
			Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, ca.cert.Raw}, PrivateKey: key}}}))
		return port
	}
	ipPort, namePort := serve(byIP, byIPKey), serve(byName, byNameKey)
	tests := []struct {
		name, port, authority, wantErr string
	}{
		{name: "IP replica by its IP", port: ipPort, authority: "127.0.0.1:" + ipPort},
		{name: "named replica by its name", port: namePort, authority: "localhost:" + namePort},
		{name: "named replica by an IP it does not hold", port: namePort, authority: "127.0.0.1:" + namePort,
			wantErr: `pinned CA for "127.0.0.1"`},
		{name: "IP replica by a name it does not hold", port: ipPort, authority: "localhost:" + ipPort,
			wantErr: `pinned CA for "localhost"`},
	}
	creds := identity.PinnedCredentials(ca.pin())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", "127.0.0.1:"+tt.port)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, _, err := creds.Clone().ClientHandshake(ctx, tt.authority, raw)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				conn.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("handshake err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
