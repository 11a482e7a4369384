// Package identity is the agent's device identity: it enrolls with the
// server (pinning the server CA from the enrollment token on first contact),
// and keeps the device key, certificate and trusted CA bundle in the data
// directory, from which it builds the mTLS client configuration.
package identity

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
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/evident-dev/evident/internal/atomicfile"
	"github.com/evident-dev/evident/internal/clock"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/evident-dev/evident/agent/serverlist"
	"github.com/evident-dev/evident/internal/enrolltoken"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// Files in the identity directory.
const (
	keyFile   = "device.key"
	certFile  = "device.crt"
	caFile    = "ca.pem"
	stateFile = "enrollment.json"
)

// ErrNotEnrolled means the data directory holds no identity yet.
var ErrNotEnrolled = errors.New("this agent is not enrolled: run `evident-agent enroll --server HOST:PORT --token TOKEN`")

// Identity is an enrolled device.
type Identity struct {
	DeviceID   string    `json:"device_id"`
	Server     string    `json:"server"`
	EnrolledAt time.Time `json:"enrolled_at"`
	CAPin      string    `json:"ca_sha256"`
	// TPM is the TPM the device enrolled with ("" without one): a device
	// path, "swtpm:HOST:PORT", "unix:PATH" or "platform". Its AK blob is
	// AKPath().
	TPM string `json:"tpm,omitempty"`
	// TPMEventLog is the event log path given at enrollment ("" for the
	// platform's).
	TPMEventLog string `json:"tpm_event_log,omitempty"`

	dir string
	// mu guards cert and ca, which a renewal replaces while the uplink
	// reads them at each handshake.
	mu   sync.Mutex
	cert tls.Certificate
	ca   *x509.CertPool
	// caPEM is ca.pem as read or last written.
	caPEM []byte
}

// Dir returns the identity directory under an agent data directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, "identity") }

// Load reads the identity from dir.
func Load(dir string) (*Identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, err
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	id.dir = dir
	cert, err := loadCurrent(dir)
	if err != nil {
		return nil, fmt.Errorf("load device certificate: %w", err)
	}
	id.cert = cert
	if id.caPEM, err = os.ReadFile(filepath.Join(dir, caFile)); err != nil {
		return nil, err
	}
	id.ca = x509.NewCertPool()
	if !id.ca.AppendCertsFromPEM(id.caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", filepath.Join(dir, caFile))
	}
	return &id, nil
}

// CertExpiry returns when the device certificate expires.
func (id *Identity) CertExpiry() time.Time {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert.Leaf.NotAfter
}

// ErrCertExpired is wrapped by Expired's error.
var ErrCertExpired = errors.New("device certificate expired")

// Expired returns, when the device certificate has expired at now, an
// error saying when and what to do: the server refuses an expired
// certificate, and only a new enrollment gives the device a new one.
func (id *Identity) Expired(now time.Time) error {
	exp := id.CertExpiry()
	if now.Before(exp) {
		return nil
	}
	return fmt.Errorf("%w on %s (it was not renewed in time: the device was offline or the server unreachable for the last third of its lifetime): re-enroll with `evident-agent enroll --force --server %s --token TOKEN` and a new enrollment token",
		ErrCertExpired, exp.UTC().Format(time.RFC3339), id.Server)
}

// TLSConfig is the mTLS client configuration for the evidence stream. The
// certificate comes through a callback so a renewal takes effect without a
// restart.
//
// With one server address, ServerName is its host. With several it is left
// empty: gRPC sets it at each handshake to the host of the address dialled
// (serverlist.NewClient gives each address its own).
func (id *Identity) TLSConfig() (*tls.Config, error) {
	servers, err := serverlist.Parse(id.Server)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", id.Server, err)
	}
	var host string
	if len(servers) == 1 {
		host = serverlist.Host(servers[0])
	}
	id.mu.Lock()
	pool := id.ca
	id.mu.Unlock()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		ServerName: host,
		Time:       clock.Now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			id.mu.Lock()
			defer id.mu.Unlock()
			c := id.cert
			return &c, nil
		},
	}, nil
}

// HostFacts describe the enrolling machine.
type HostFacts = evidentv1.HostFacts

// akFile holds the TPM-wrapped attestation key blob (useless off its TPM).
const akFile = "ak.blob"

// AKPath is where the AK blob of the identity in dir is kept.
func AKPath(dir string) string { return filepath.Join(dir, akFile) }

// Dir returns the directory the identity was loaded from.
func (id *Identity) Dir() string { return id.dir }

// TPMBinding is a TPM to bind the enrollment to: it names its EK and
// proposes an AK, and proves the AK resident by activating the server's
// credential challenge.
type TPMBinding interface {
	Identity() (*evidentv1.TPMIdentity, error)
	Activate(*evidentv1.ActivationChallenge) ([]byte, error)
}

// EnrollOptions are the optional parts of an enrollment.
type EnrollOptions struct {
	// TPM binds the device identity to a TPM; nil enrolls without.
	TPM TPMBinding
	// TPMSpec and TPMEventLog are recorded so `run` opens the same TPM.
	TPMSpec, TPMEventLog string
}

// Enroll enrolls this device with the server at addr using token, and writes
// the identity into dir. addr is a server setting: one HOST:PORT or several,
// comma-separated (replicas; the first that answers enrolls the device). A
// server is trusted only if it presents a chain containing the CA pinned in
// the token and a certificate valid for the host of the address dialled.
//
// With opts.TPM, enrollment takes two calls: the server answers the first
// with a credential challenge for the EK and AK, and issues the
// certificate only for the secret the TPM recovers from it.
func Enroll(ctx context.Context, dir, addr, token string, facts *HostFacts, opts EnrollOptions) (*Identity, error) {
	tok, err := enrolltoken.Parse(token)
	if err != nil {
		return nil, err
	}
	servers, err := serverlist.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	addr = strings.Join(servers, ",")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: facts.GetHostname()},
	}, key)
	if err != nil {
		return nil, err
	}
	conn, err := serverlist.NewClient(servers, grpc.WithTransportCredentials(PinnedCredentials(tok.CAPin)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := &evidentv1.EnrollRequest{EnrollSecret: tok.Secret, Csr: csr, Host: facts}
	if opts.TPM != nil {
		if req.Tpm, err = opts.TPM.Identity(); err != nil {
			return nil, fmt.Errorf("TPM: %w", err)
		}
	}
	client := evidentv1.NewEnrollmentClient(conn)
	call := func() (*evidentv1.EnrollResponse, error) {
		resp, err := client.Enroll(ctx, req, grpc.WaitForReady(false))
		if err != nil {
			if s, ok := status.FromError(err); ok {
				return nil, fmt.Errorf("enrollment refused by %s: %s (%s)", addr, s.Message(), s.Code())
			}
			return nil, fmt.Errorf("enroll with %s: %w", addr, err)
		}
		return resp, nil
	}
	resp, err := call()
	if err != nil {
		return nil, err
	}
	if ch := resp.GetActivation(); ch != nil {
		if opts.TPM == nil {
			return nil, errors.New("server sent a TPM challenge to an enrollment without a TPM")
		}
		secret, err := opts.TPM.Activate(ch)
		if err != nil {
			return nil, fmt.Errorf("TPM credential activation: %w", err)
		}
		req.Activation = &evidentv1.ActivationProof{ChallengeId: ch.GetChallengeId(), Secret: secret}
		if resp, err = call(); err != nil {
			return nil, err
		}
	} else if opts.TPM != nil {
		return nil, fmt.Errorf("server %s did not challenge the TPM: it does not support TPM enrollment (enroll with --tpm none)", addr)
	}
	leaf, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return nil, fmt.Errorf("server returned an unreadable certificate: %w", err)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		return nil, errors.New("server returned a certificate for a different key")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	id := &Identity{DeviceID: resp.GetDeviceId(), Server: addr, EnrolledAt: clock.Now().UTC(), CAPin: tok.CAPin}
	if opts.TPM != nil {
		id.TPM, id.TPMEventLog = opts.TPMSpec, opts.TPMEventLog
		if id.TPM == "" {
			id.TPM = "platform"
		}
	}
	// A renewal of an earlier identity left half done must not be
	// resumed under this one.
	if err := removeNext(dir); err != nil {
		return nil, err
	}
	state, _ := json.MarshalIndent(id, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600},
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.GetCertificate()}), 0o644},
		{caFile, resp.GetCaBundle(), 0o644},
		{stateFile, append(state, '\n'), 0o644}, // last: its presence means "enrolled"
	} {
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return nil, err
		}
	}
	return Load(dir)
}

// PinnedCredentials are gRPC transport credentials that trust a server as
// PinnedTLS does, for the host of whichever address gRPC dials: the
// address's ServerName, or the channel's authority.
func PinnedCredentials(pin string) credentials.TransportCredentials {
	return pinnedCreds{TransportCredentials: credentials.NewTLS(PinnedTLS("", pin)), pin: pin}
}

type pinnedCreds struct {
	credentials.TransportCredentials // everything but the client handshake
	pin                              string
}

func (c pinnedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(PinnedTLS(serverlist.Host(authority), c.pin)).ClientHandshake(ctx, authority, raw)
}

func (c pinnedCreds) Clone() credentials.TransportCredentials {
	return pinnedCreds{TransportCredentials: c.TransportCredentials.Clone(), pin: c.pin}
}

// PinnedTLS trusts a server only through the CA whose certificate's SHA-256
// is pin: the chain the server presents must contain that CA, and the leaf
// must verify against it for host.
func PinnedTLS(host, pin string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		Time:               clock.Now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			var ca *x509.Certificate
			for _, c := range cs.PeerCertificates {
				sum := sha256.Sum256(c.Raw)
				if hex.EncodeToString(sum[:]) == pin {
					ca = c
				}
			}
			if ca == nil {
				return errors.New("the server's certificate chain does not contain the CA pinned in the enrollment token: wrong server, or a token from another server")
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: pool, CurrentTime: clock.Now()})
			if err != nil {
				return fmt.Errorf("server certificate does not verify against the pinned CA for %q: %w (start the server with --san %s)", host, err, host)
			}
			return nil
		},
	}
}
