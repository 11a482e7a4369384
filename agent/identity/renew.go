package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/evident-dev/evident/agent/serverlist"
	"github.com/evident-dev/evident/internal/atomicfile"
	"github.com/evident-dev/evident/internal/testhook"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// A renewal writes the next key and certificate beside the current ones and
// installs them only once the server has confirmed the new certificate:
//
//  1. device.key.next: a new key, written before the server sees its CSR.
//  2. device.crt.next: the server's certificate for it.
//  3. Confirm, over a connection made with the next pair: from then on the
//     server refuses the previous certificate.
//  4. device.key.next -> device.key, then device.crt.next -> device.crt.
//
// A crash at any step leaves a working identity: before step 3 the current
// pair still authenticates (the server accepts both), and a next pair on
// disk is confirmed when the agent starts again (ResumeRenewal); between the
// two renames of step 4, Load pairs device.key with device.crt.next.
const (
	nextKeyFile  = keyFile + ".next"
	nextCertFile = certFile + ".next"
)

// loadCurrent loads the device key pair, finishing an install interrupted
// between its two renames (device.key already the next key).
func loadCurrent(dir string) (tls.Certificate, error) {
	keyPath, certPath := filepath.Join(dir, keyFile), filepath.Join(dir, certFile)
	cert, err := loadPair(certPath, keyPath)
	if err == nil {
		return cert, nil
	}
	// Only one of the two renames reached the disk: finish the other.
	nextCert, nextKey := filepath.Join(dir, nextCertFile), filepath.Join(dir, nextKeyFile)
	if c, nerr := loadPair(nextCert, keyPath); nerr == nil {
		if err := os.Rename(nextCert, certPath); err != nil {
			return tls.Certificate{}, err
		}
		return c, atomicfile.SyncDir(dir)
	}
	if c, nerr := loadPair(certPath, nextKey); nerr == nil {
		if err := os.Rename(nextKey, keyPath); err != nil {
			return tls.Certificate{}, err
		}
		return c, atomicfile.SyncDir(dir)
	}
	return tls.Certificate{}, err
}

func loadPair(certPath, keyPath string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return c, err
	}
	// LoadX509KeyPair fills Leaf (Go 1.23 and later); CertExpiry reads it.
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return c, err
		}
	}
	return c, nil
}

func removeNext(dir string) error {
	for _, f := range []string{nextKeyFile, nextCertFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// RenewAt is when the device certificate is due for renewal: two thirds of
// the way through its lifetime, leaving a third (30 days of the default 90)
// for a device that is offline or cannot reach the server to catch up.
func (id *Identity) RenewAt() time.Time {
	id.mu.Lock()
	leaf := id.cert.Leaf
	id.mu.Unlock()
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
}

// Prover proves, on a TPM-bound device, that a renewal's CSR comes from the
// device holding the enrolled attestation key: an Attestation over nonce
// whose report is the CSR.
type Prover func(nonce, csr []byte) (*evidentv1.Attestation, error)

// Renew replaces the device key and certificate (the steps above):
// RequestRenewal, then ResumeRenewal. prove answers the server's challenge
// on a TPM-bound device; nil on a device without a TPM. On success the new
// pair is in use: handshakes made from then on present it.
func (id *Identity) Renew(ctx context.Context, prove Prover) error {
	if err := id.RequestRenewal(ctx, prove); err != nil {
		return err
	}
	return id.ResumeRenewal(ctx)
}

// RequestRenewal is a renewal's steps 1 and 2: a new key, and the server's
// certificate for it, left on disk for ResumeRenewal to confirm.
func (id *Identity) RequestRenewal(ctx context.Context, prove Prover) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := atomicfile.WriteFile(filepath.Join(id.dir, nextKeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("renewal: write the next key: %w", err)
	}
	testhook.Crash("renew:key-written")
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id.DeviceID}}, key)
	if err != nil {
		return err
	}
	cur, err := id.TLSConfig()
	if err != nil {
		return err
	}
	req := &evidentv1.RenewRequest{Csr: csr}
	var resp *evidentv1.RenewResponse
	err = id.call(ctx, cur, func(ctx context.Context, c evidentv1.CredentialsClient) error {
		var err error
		if resp, err = c.Renew(ctx, req); err != nil {
			return err
		}
		if ch := resp.GetChallenge(); ch != nil {
			if prove == nil {
				return errors.New("the server asked for a TPM proof and this agent has no TPM to answer with")
			}
			if req.Proof, err = prove(ch.GetNonce(), csr); err != nil {
				return fmt.Errorf("TPM proof: %w", err)
			}
			resp, err = c.Renew(ctx, req)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("renewal: %w", err)
	}
	leaf, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return fmt.Errorf("renewal: the server returned an unreadable certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("renewal: the server returned a certificate for a different key")
	}
	if b := resp.GetCaBundle(); len(b) > 0 {
		if _, err := id.SetTrust(b); err != nil {
			return fmt.Errorf("renewal: %w", err)
		}
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.GetCertificate()})
	if err := atomicfile.WriteFile(filepath.Join(id.dir, nextCertFile), certPEM, 0o644); err != nil {
		return fmt.Errorf("renewal: write the next certificate: %w", err)
	}
	testhook.Crash("renew:certificate-written")
	return nil
}

// ErrRenewalRefused is wrapped by ResumeRenewal when the server does not
// know the next certificate on disk: it is discarded, and the current one
// stays in use.
var ErrRenewalRefused = errors.New("the server refused the renewed certificate")

// HasPendingRenewal reports whether a renewed key pair waits on disk for
// the server's confirmation.
func (id *Identity) HasPendingRenewal() bool {
	_, err := os.Stat(filepath.Join(id.dir, nextCertFile))
	return err == nil
}

// ResumeRenewal confirms and installs a renewed key pair left on disk (by
// Renew, or by an agent stopped during one). Without one it does nothing.
// When the server refuses it (it never recorded it, or the device was
// revoked) the pair is discarded and ErrRenewalRefused returned; on any
// other error the pair is kept for the next attempt.
func (id *Identity) ResumeRenewal(ctx context.Context) error {
	nextCert, nextKey := filepath.Join(id.dir, nextCertFile), filepath.Join(id.dir, nextKeyFile)
	if _, kerr := os.Stat(nextKey); errors.Is(kerr, os.ErrNotExist) {
		if _, cerr := os.Stat(nextCert); cerr == nil {
			// An install stopped after its first rename: finish it.
			c, err := loadCurrent(id.dir)
			if err != nil {
				return fmt.Errorf("renewal: finishing the install: %w", err)
			}
			id.mu.Lock()
			id.cert = c
			id.mu.Unlock()
			return nil
		}
	}
	next, err := loadPair(nextCert, nextKey)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no renewal in progress (a key alone: the request never got an answer)
	}
	if err != nil {
		// A torn pair cannot be confirmed: start over at the next renewal.
		return errors.Join(fmt.Errorf("renewal: unreadable next key pair, discarded: %w", err), removeNext(id.dir))
	}
	conf, err := id.TLSConfig()
	if err != nil {
		return err
	}
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &next, nil }
	err = id.call(ctx, conf, func(ctx context.Context, c evidentv1.CredentialsClient) error {
		_, err := c.Confirm(ctx, &evidentv1.ConfirmRequest{})
		return err
	})
	if status.Code(err) == codes.PermissionDenied {
		return errors.Join(fmt.Errorf("%w: %s", ErrRenewalRefused, status.Convert(err).Message()), removeNext(id.dir))
	}
	if err != nil {
		return fmt.Errorf("renewal: confirming the new certificate: %w", err)
	}
	// Confirmed: the server now accepts only the new certificate. Install
	// it; Load finishes these renames if the agent stops between them.
	testhook.Crash("renew:confirmed")
	if err := os.Rename(nextKey, filepath.Join(id.dir, keyFile)); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(id.dir); err != nil {
		return err
	}
	testhook.Crash("renew:key-installed")
	if err := os.Rename(nextCert, filepath.Join(id.dir, certFile)); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(id.dir); err != nil {
		return err
	}
	id.mu.Lock()
	id.cert = next
	id.mu.Unlock()
	return nil
}

// call runs f against the server's Credentials service over a connection
// made with conf, which closes afterwards.
func (id *Identity) call(ctx context.Context, conf *tls.Config, f func(context.Context, evidentv1.CredentialsClient) error) error {
	servers, err := serverlist.Parse(id.Server)
	if err != nil {
		return fmt.Errorf("server address %q: %w", id.Server, err)
	}
	conn, err := serverlist.NewClient(servers, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return f(ctx, evidentv1.NewCredentialsClient(conn))
}
