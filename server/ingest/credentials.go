package ingest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/internal/every"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
)

// renewEvery bounds how often one device may be issued a certificate: a
// renewal not confirmed may be retried (the response was lost), but a
// device cannot make the CA sign in a loop.
const renewEvery = time.Minute

// DefaultCredentialCheck is how often a replica checks its open streams
// against the store's credentials (Server.CredentialCheck).
const DefaultCredentialCheck = 10 * time.Second

// Renew implements evidentv1.CredentialsServer: a certificate for the
// device's next key, once half of its current certificate's lifetime has
// passed (agents ask at two thirds). On a TPM-bound device the first call
// returns a challenge, and the second must carry quotes by the enrolled
// attestation key over that nonce with the CSR as the covered report: a
// copied device key cannot renew away from its TPM.
func (s *Server) Renew(ctx context.Context, req *evidentv1.RenewRequest) (*evidentv1.RenewResponse, error) {
	c, ok := callerFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no device identity")
	}
	if len(req.GetCsr()) == 0 || len(req.GetCsr()) > maxCSRBytes {
		return nil, status.Error(codes.InvalidArgument, "csr is missing or larger than 8 KiB")
	}
	csr, err := pki.CheckCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	now := s.now()
	if half := c.notBefore.Add(c.notAfter.Sub(c.notBefore) / 2); now.Before(half) {
		return nil, status.Errorf(codes.FailedPrecondition, "this certificate is not due for renewal before %s (half its lifetime)", half.UTC().Format(time.RFC3339))
	}
	keyHash, err := pki.KeySHA256(csr.PublicKey)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr key: %v", err)
	}
	if err := s.checkFreshKey(ctx, keyHash); err != nil {
		return nil, err
	}
	d := c.dev // as authentication read it, for this call
	if d.NextCertSerial != "" && now.Before(d.NextCertNotAfter.Add(-s.ca().DeviceCertTTL).Add(renewEvery)) {
		return nil, status.Errorf(codes.ResourceExhausted, "a certificate was issued to this device less than %s ago; confirm it or retry later", renewEvery)
	}
	if tpm, err := s.Store.DeviceTPM(ctx, c.id); err == nil {
		if req.GetProof() == nil {
			return s.renewChallenge(ctx, c.id, now)
		}
		if err := s.checkRenewProof(ctx, c.id, tpm, req, now); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, status.Error(codes.Unavailable, "device lookup failed")
	} else if req.GetProof() != nil {
		return nil, status.Error(codes.InvalidArgument, "a TPM proof from a device enrolled without a TPM")
	}
	der, err := s.ca().SignDevice(req.GetCsr(), c.id)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	rec, err := certRecord(der, c.id, now)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "issued certificate: %v", err)
	}
	if err := s.Store.AddCertificate(ctx, c.id, rec); err != nil {
		s.Log.Error("renewal: store certificate", "device", c.id, "err", err)
		return nil, status.Error(codes.Unavailable, "renewal temporarily unavailable")
	}
	s.metrics().renewals.WithLabelValues("issued").Inc()
	s.Log.Info("device certificate renewed", "device", c.id, "serial", rec.Serial, "not_after", rec.NotAfter, "previous_serial", c.serial)
	return &evidentv1.RenewResponse{Certificate: der, CaBundle: s.ca().PEM()}, nil
}

// Confirm implements evidentv1.CredentialsServer. Authentication has done
// the work: a call with the device's next certificate confirms it.
func (s *Server) Confirm(ctx context.Context, _ *evidentv1.ConfirmRequest) (*evidentv1.ConfirmResponse, error) {
	c, ok := callerFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no device identity")
	}
	return &evidentv1.ConfirmResponse{NotAfter: timestamppb.New(c.notAfter)}, nil
}

// checkFreshKey refuses a key the CA certified before: enrollment and
// renewal each certify a new key, so a copied or revoked device's key can
// never come back under a new certificate.
func (s *Server) checkFreshKey(ctx context.Context, keyHash []byte) error {
	_, err := s.Store.CertificateByKey(ctx, keyHash)
	switch {
	case err == nil:
		// Enrollment is not authenticated: the refusal names nothing.
		return status.Error(codes.PermissionDenied, "this key was certified before: each enrollment and renewal needs a new key")
	case errors.Is(err, store.ErrNotFound):
		return nil
	default:
		return status.Error(codes.Unavailable, "certificate lookup failed")
	}
}

func (s *Server) renewChallenge(ctx context.Context, deviceID string, now time.Time) (*evidentv1.RenewResponse, error) {
	nonce, err := newNonce()
	if err != nil {
		return nil, status.Error(codes.Internal, "nonce")
	}
	exp := now.Add(s.nonceTTL())
	if err := s.Store.CreateNonce(ctx, store.Nonce{Value: nonce, DeviceID: deviceID, ExpiresAt: exp}); err != nil {
		return nil, status.Error(codes.Unavailable, "renewal temporarily unavailable")
	}
	return &evidentv1.RenewResponse{Challenge: &evidentv1.AttestationChallenge{Nonce: nonce, ExpiresAt: timestamppb.New(exp)}}, nil
}

// checkRenewProof checks that the enrolled AK quoted the issued nonce with
// this CSR as the covered report, on at least one PCR bank.
func (s *Server) checkRenewProof(ctx context.Context, deviceID string, tpm store.DeviceTPM, req *evidentv1.RenewRequest, now time.Time) error {
	proof := req.GetProof()
	if string(proof.GetReport()) != string(req.GetCsr()) {
		return status.Error(codes.InvalidArgument, "the TPM proof must cover the CSR sent with it")
	}
	n, err := s.Store.TakeNonce(ctx, deviceID, proof.GetNonce(), now)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExpired):
		return status.Error(codes.FailedPrecondition, "the renewal challenge is unknown, used or expired: renew again for a new one")
	case err != nil:
		return status.Error(codes.Unavailable, "renewal temporarily unavailable")
	}
	v := attest.VerifyAttestation(tpm.AKPublic, n.Value, proof, nil)
	if len(v.Banks) == 0 || !passed(v, attest.CheckNonce) {
		s.metrics().renewals.WithLabelValues("refused").Inc()
		s.Log.Warn("renewal refused: TPM proof did not verify", "device", deviceID, "reasons", v.Reasons)
		return status.Errorf(codes.PermissionDenied, "TPM proof refused: %s", strings.Join(v.Reasons, "; "))
	}
	return nil
}

// certRecord is how the store keeps a certificate the CA just issued.
func certRecord(der []byte, deviceID string, now time.Time) (store.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return store.Certificate{}, err
	}
	h, err := pki.KeySHA256(cert.PublicKey)
	if err != nil {
		return store.Certificate{}, err
	}
	return store.Certificate{Serial: pki.Serial(cert), DeviceID: deviceID, KeySHA256: h, IssuedAt: now, NotAfter: cert.NotAfter}, nil
}

// liveStream is an open evidence stream: who it authenticated as, and the
// connection to close when that no longer holds.
type liveStream struct {
	deviceID, serial string
	notAfter         time.Time
	conn             net.Conn
	// out sends on the stream (commands: CollectNow).
	out *sender
}

// streamRegistry holds a replica's open evidence streams by device, and
// its connections by remote address (connTracker records them at the
// handshake).
type streamRegistry struct {
	mu      sync.Mutex
	streams map[string]map[*liveStream]struct{}
	conns   map[string]net.Conn
}

func (r *streamRegistry) init() {
	if r.streams == nil {
		r.streams = map[string]map[*liveStream]struct{}{}
		r.conns = map[string]net.Conn{}
	}
}

// add registers a stream of caller c on the connection from addr.
func (r *streamRegistry) add(c caller, addr net.Addr, out *sender) (remove func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	ls := &liveStream{deviceID: c.id, serial: c.serial, notAfter: c.notAfter, out: out}
	if addr != nil {
		ls.conn = r.conns[addr.String()]
	}
	m := r.streams[c.id]
	if m == nil {
		m = map[*liveStream]struct{}{}
		r.streams[c.id] = m
	}
	m[ls] = struct{}{}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(m, ls)
		if len(m) == 0 && r.streams[c.id] != nil && len(r.streams[c.id]) == 0 {
			delete(r.streams, c.id)
		}
	}
}

// closeWhere closes the connection of every stream for which refuse gives
// a reason, and returns how many it closed.
func (r *streamRegistry) closeWhere(devices []string, refuse func(*liveStream) string, log func(ls *liveStream, why string)) int {
	r.mu.Lock()
	var victims []*liveStream
	var whys []string
	visit := func(m map[*liveStream]struct{}) {
		for ls := range m {
			if why := refuse(ls); why != "" {
				victims = append(victims, ls)
				whys = append(whys, why)
			}
		}
	}
	if devices == nil {
		for _, m := range r.streams {
			visit(m)
		}
	} else {
		for _, id := range devices {
			visit(r.streams[id])
		}
	}
	r.mu.Unlock()
	for i, ls := range victims {
		log(ls, whys[i])
		if ls.conn != nil {
			ls.conn.Close()
		}
	}
	return len(victims)
}

// connTracker wraps the server's TLS credentials to record each
// connection by its remote address: the handle a revocation closes, since
// gRPC offers no way to end a stream from outside its handler.
type connTracker struct {
	credentials.TransportCredentials
	reg *streamRegistry
}

func (t connTracker) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := t.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	if lc, ok := raw.(*limitedConn); ok {
		lc.handshaken()
	}
	tc := &trackedConn{Conn: conn, reg: t.reg, key: raw.RemoteAddr().String()}
	t.reg.mu.Lock()
	t.reg.init()
	t.reg.conns[tc.key] = tc
	t.reg.mu.Unlock()
	return tc, info, nil
}

func (t connTracker) Clone() credentials.TransportCredentials {
	return connTracker{TransportCredentials: t.TransportCredentials.Clone(), reg: t.reg}
}

type trackedConn struct {
	net.Conn
	reg  *streamRegistry
	key  string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.reg.mu.Lock()
		if c.reg.conns[c.key] == c {
			delete(c.reg.conns, c.key)
		}
		c.reg.mu.Unlock()
	})
	return c.Conn.Close()
}

// WatchCredentials closes, every interval (default DefaultCredentialCheck),
// the open streams whose credentials the store no longer accepts (the
// device was revoked, or its certificate replaced by a confirmed renewal)
// or whose certificate has expired since the stream opened. It returns
// when ctx ends. Every replica runs it for its own streams.
func (s *Server) WatchCredentials(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultCredentialCheck
	}
	// Changes are stamped by the clock of whoever made them and are seen
	// once committed: each check looks back a minute before the previous
	// one, so a late commit or a replica's clock a little behind is not
	// missed.
	since := s.now().Add(-time.Minute)
	s.poll(ctx, every, "checking credential changes", func(ctx context.Context, now time.Time) error {
		changed, err := s.Store.CredentialChanges(ctx, since)
		if err != nil {
			return err
		}
		since = now.Add(-time.Minute)
		byID := make(map[string]store.Device, len(changed))
		ids := make([]string, 0, len(changed))
		for _, d := range changed {
			byID[d.ID] = d
			ids = append(ids, d.ID)
		}
		closing := func(reason string) func(*liveStream, string) {
			return func(ls *liveStream, why string) {
				s.metrics().streamsClosed.WithLabelValues(reason).Inc()
				s.Log.Warn("closing an evidence stream", "device", ls.deviceID, "serial", ls.serial, "reason", why)
			}
		}
		s.streams.closeWhere(ids, func(ls *liveStream) string {
			if d, ok := byID[ls.deviceID]; ok {
				if err := refusal(d, ls.serial); err != nil {
					return status.Convert(err).Message()
				}
			}
			return ""
		}, closing("revoked"))
		s.streams.closeWhere(nil, func(ls *liveStream) string {
			if !ls.notAfter.IsZero() && !now.Before(ls.notAfter) {
				return fmt.Sprintf("its certificate expired at %s", ls.notAfter.UTC().Format(time.RFC3339))
			}
			return ""
		}, closing("expired"))
		return nil
	})
}

// poll calls f every interval until ctx ends, with the server's clock;
// a failure is logged once per outage (package every).
func (s *Server) poll(ctx context.Context, interval time.Duration, what string, f func(context.Context, time.Time) error) {
	every.Run(ctx, interval, s.Log, what, func(ctx context.Context) error { return f(ctx, s.now()) })
}

// registerStream records an authenticated stream for WatchCredentials and
// WatchCommands.
func (s *Server) registerStream(ctx context.Context, out *sender) func() {
	c, ok := callerFromContext(ctx)
	if !ok {
		return func() {}
	}
	var addr net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		addr = p.Addr
	}
	return s.streams.add(c, addr, out)
}

// broadcast sends m on every open stream, each send on its own goroutine
// (a device that stopped reading blocks only its own), and returns to how
// many streams.
func (r *streamRegistry) broadcast(m *evidentv1.ServerMessage) int {
	r.mu.Lock()
	var outs []*sender
	for _, streams := range r.streams {
		for ls := range streams {
			if ls.out != nil {
				outs = append(outs, ls.out)
			}
		}
	}
	r.mu.Unlock()
	for _, out := range outs {
		go out.send(m) //nolint:errcheck // a failed send ends that stream, which gets m after its next Hello
	}
	return len(outs)
}

// sender returns a stream of the device open on this replica, nil when none.
func (r *streamRegistry) sender(deviceID string) *sender {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ls := range r.streams[deviceID] {
		return ls.out
	}
	return nil
}

// passed reports whether a verdict ran the named check and it passed.
func passed(v *attest.Verdict, check string) bool {
	ran := false
	for _, c := range v.Checks {
		if c.Name == check {
			if !c.OK {
				return false
			}
			ran = true
		}
	}
	return ran
}
