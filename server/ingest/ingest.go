// Package ingest is the server's gRPC face: enrollment (secret + CSR in,
// device certificate out) and the evidence stream (observations in,
// cumulative acks out), with device authentication as interceptors. The
// device id of every stored observation comes from the verified client
// certificate, never from the payload.
package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/internal/enrolltoken"
	"github.com/evident-dev/evident/internal/safetext"
	"github.com/evident-dev/evident/internal/throttle"
	"github.com/evident-dev/evident/proto/evidence"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/devices"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/scorer"
	"github.com/evident-dev/evident/server/store"
)

// Limits on what a caller may send. gRPC's own message limit is set to
// MaxMessageBytes explicitly.
const (
	MaxMessageBytes     = 4 << 20
	MaxBatch            = 1000
	MaxPayloadBytes     = 512 << 10
	MaxSourcesBytes     = 64 << 10
	maxCollectorName    = 64
	maxErrorBytes       = 4096
	maxCSRBytes         = 8 << 10
	maxSecretBytes      = 256
	maxHostFieldBytes   = 256
	clockSkewAhead      = 2 * time.Minute
	clockSkewBehind     = 5 * time.Minute
	maxConcurrentStream = 10000
)

// Store is what the ingest server uses: enrollment, TPM enrollment and
// attestation, evidence, and recording the scores.
type Store interface {
	store.Enrollment
	store.TPM
	store.Evidence
	store.Recorder
	store.Credentials
	store.Commands
	DevicesDue(ctx context.Context, now time.Time) ([]string, error)
	// AddAudit records what the server itself decided about a device (a
	// device over its quota).
	AddAudit(ctx context.Context, e store.AuditEntry) (int64, error)
}

// Server implements the Enrollment and Evidence services.
type Server struct {
	evidentv1.UnimplementedEnrollmentServer
	evidentv1.UnimplementedEvidenceServer
	evidentv1.UnimplementedCredentialsServer

	Store Store
	// CA signs device certificates; Authority, when set, replaces it with
	// the CA of the moment (a CA rollover takes effect without a restart).
	CA        *pki.CA
	Authority *pki.Authority
	Policy    *controls.Policy
	Log       *slog.Logger
	Now       func() time.Time

	// EKPolicy is the set of TPM manufacturer roots and allowed EKs; nil
	// trusts no EK, so TPM enrollments are refused.
	EKPolicy *attest.EKPolicy
	// NonceTTL, ActivationTTL and AttestEvery default to DefaultNonceTTL,
	// DefaultActivationTTL and DefaultAttestEvery.
	NonceTTL      time.Duration
	ActivationTTL time.Duration
	AttestEvery   time.Duration

	// MaxInFlight bounds the reports stored and scored at once (default
	// DefaultMaxInFlight); a report that waits longer than QueueWait
	// (default DefaultQueueWait) for its turn is refused with Unavailable,
	// a retryable status: the agent keeps it in its outbox and retries
	// with backoff, so an overloaded server sheds load instead of
	// queueing without bound, and nothing acknowledged is lost.
	MaxInFlight int
	QueueWait   time.Duration
	// BusyRetry is how long an agent that understands Busy (Hello.
	// accepts_busy) is told to wait before resending, instead of its
	// stream being ended (default DefaultBusyRetry; each answer adds up to
	// half as much again, so a fleet does not return in step).
	BusyRetry time.Duration

	admitOnce sync.Once
	slots     chan struct{}

	// ServerCert, when set, gives the server certificate at each TLS
	// handshake (renewed as it nears expiry); without it the certificate
	// given to GRPCServer is served.
	ServerCert func() (*tls.Certificate, error)

	m           *Metrics
	metricsOnce sync.Once

	// QuotaObservations and QuotaBytes bound what one device may send in
	// an hour (zero: DefaultQuotaObservations, DefaultQuotaBytes); a report
	// over it is refused with a retryable status.
	QuotaObservations, QuotaBytes int
	quota                         quotas

	enrollOnce     sync.Once
	enrollThrottle *throttle.Failures

	// streams are this replica's open evidence streams (WatchCredentials).
	streams streamRegistry
}

// Admission defaults: SQLite writes one transaction at a time, so more
// reports in flight than this only wait longer.
const (
	DefaultMaxInFlight = 16
	DefaultQueueWait   = 10 * time.Second
	DefaultBusyRetry   = 5 * time.Second
	// MaxBusyRetry bounds BusyRetry: with its jitter (up to half again)
	// a pause stays under the longest one an agent honours (5 min, see
	// agent/uplink). An agent that resumed earlier than the server
	// expects would have its resends dropped, and wait for their acks.
	MaxBusyRetry = 3 * time.Minute
)

// busyRetry is the pause a Busy answer asks for.
func (s *Server) busyRetry() time.Duration {
	d := s.BusyRetry
	if d <= 0 {
		d = DefaultBusyRetry
	}
	d = min(d, MaxBusyRetry)
	return d + rand.N(d/2+1)
}

// errOverloaded is the status an agent gets when its report waited too long.
var errOverloaded = status.Error(codes.Unavailable, "server overloaded: the report was not stored; retry later")

// admit waits for a slot to store a report; release gives it back. It
// fails with errOverloaded after QueueWait, or when ctx ends.
func (s *Server) admit(ctx context.Context) (release func(), err error) {
	s.admitOnce.Do(s.initSlots)
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	default:
	}
	m := s.metrics()
	m.waiting.Inc()
	defer m.waiting.Dec()
	wait := s.QueueWait
	if wait <= 0 {
		wait = DefaultQueueWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	case <-t.C:
		return nil, errOverloaded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Server) initSlots() {
	n := s.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	s.slots = make(chan struct{}, n)
}

// GRPCServer builds the gRPC server: mTLS with client certificates
// verified against the device CA when given (enrollment has none yet),
// explicit size limits, keepalive, auth interceptors, health and
// reflection.
func (s *Server) GRPCServer(serverCert tls.Certificate) *grpc.Server {
	tlsConf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{serverCert},
		ClientCAs:    s.CA.Pool(),
		ClientAuth:   tls.VerifyClientCertIfGiven,
		Time:         s.now, // client certificates are valid on the server's clock
	}
	if s.Authority != nil {
		// Device certificates are verified against the CAs trusted at
		// each handshake.
		base := tlsConf.Clone()
		tlsConf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := base.Clone()
			c.ClientCAs = s.ca().Pool()
			if s.ServerCert != nil {
				c.Certificates = nil
				c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.ServerCert() }
			}
			return c, nil
		}
	}
	if s.ServerCert != nil {
		// Each handshake asks it, so a renewed server certificate is
		// served without a restart. (crypto/tls calls GetCertificate
		// only when Certificates is empty or the client sent SNI, which
		// it does not for an IP address.)
		tlsConf.Certificates = nil
		tlsConf.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.ServerCert() }
	}
	g := grpc.NewServer(
		grpc.Creds(connTracker{TransportCredentials: credentials.NewTLS(tlsConf), reg: &s.streams}),
		// A connection that never finishes its TLS handshake is closed
		// after this, not gRPC's default 120 s (see LimitListener).
		grpc.ConnectionTimeout(HandshakeTimeout),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.MaxConcurrentStreams(maxConcurrentStream),
		// A connected agent is idle nearly all the time, and its reports
		// are a few KiB: the transport's default 32 KiB read and write
		// buffers per connection were a third of an idle stream's cost.
		// Without them the framer reads the TLS connection (which buffers
		// a record) directly, and each frame is written as it is framed.
		// test/bench -only streams measures it.
		grpc.ReadBufferSize(0),
		grpc.WriteBufferSize(0),
		// Stop waits for handlers, so the store is never closed under an
		// ingest in progress.
		grpc.WaitForHandlers(true),
		// Agents ping after 3 idle minutes (uplink.KeepaliveEvery): the
		// server pings only a client silent for longer, to find the dead
		// ones (a laptop that left the network without closing).
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 5 * time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(UnaryAuth(s.Store, s.now)),
		grpc.ChainStreamInterceptor(StreamAuth(s.Store, s.now)),
	)
	evidentv1.RegisterEnrollmentServer(g, s)
	evidentv1.RegisterEvidenceServer(g, s)
	evidentv1.RegisterCredentialsServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)
	return g
}

// ca is the CA of the moment.
func (s *Server) ca() *pki.CA {
	if s.Authority != nil {
		return s.Authority.Current()
	}
	return s.CA
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Enrollment guessing: after enrollFailures wrong secrets from one source
// address within enrollWindow, its enrollments are refused until the
// window ends.
const (
	enrollFailures = 20
	enrollWindow   = 10 * time.Minute
)

// Enroll implements evidentv1.EnrollmentServer.
func (s *Server) Enroll(ctx context.Context, req *evidentv1.EnrollRequest) (*evidentv1.EnrollResponse, error) {
	src := peerHost(ctx)
	if wait, blocked := s.enrollFails().Blocked(src, s.now()); blocked {
		if s.enrollFails().NoteThrottled(src) {
			s.Log.Warn("enrollments from this address refused: too many wrong secrets", "source", src, "for", wait.Round(time.Second))
		}
		return nil, status.Errorf(codes.ResourceExhausted, "too many failed enrollments from this address: retry in %s", wait.Round(time.Second))
	}
	resp, err := s.enroll(ctx, req)
	if status.Code(err) == codes.PermissionDenied {
		s.enrollFails().Fail(src, s.now())
	}
	return resp, err
}

func (s *Server) enrollFails() *throttle.Failures {
	s.enrollOnce.Do(func() { s.enrollThrottle = &throttle.Failures{Max: enrollFailures, Window: enrollWindow} })
	return s.enrollThrottle
}

// peerHost is the caller's source address.
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	return hostOf(p.Addr)
}

// hostOf is an address without its port: what per-source limits count.
func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func (s *Server) enroll(ctx context.Context, req *evidentv1.EnrollRequest) (*evidentv1.EnrollResponse, error) {
	if len(req.GetEnrollSecret()) == 0 || len(req.GetEnrollSecret()) > maxSecretBytes {
		return nil, status.Error(codes.InvalidArgument, "enroll_secret is missing or too long")
	}
	if len(req.GetCsr()) == 0 || len(req.GetCsr()) > maxCSRBytes {
		return nil, status.Error(codes.InvalidArgument, "csr is missing or larger than 8 KiB")
	}
	h := req.GetHost()
	if err := checkHostFacts(h); err != nil {
		return nil, err
	}
	// Check everything the caller sent before spending the secret: a bad
	// request must not use up a single-use token.
	csr, err := pki.CheckCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	keyHash, err := pki.KeySHA256(csr.PublicKey)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr key: %v", err)
	}
	if err := s.checkFreshKey(ctx, keyHash); err != nil {
		return nil, err
	}
	if req.GetTpm() != nil {
		return s.enrollTPM(ctx, req)
	}
	if req.GetActivation() != nil {
		return nil, status.Error(codes.InvalidArgument, "activation proof without a TPM identity")
	}
	if _, err := s.Store.PeekEnrollSecret(ctx, enrolltoken.HashSecret(req.GetEnrollSecret()), s.now()); err != nil {
		return nil, s.secretError(err, req.GetHost())
	}
	if err := s.checkTPMDropped(ctx, req.GetHost().GetMachineId(), s.now()); err != nil {
		return nil, err
	}
	return s.finishEnroll(ctx, req, nil)
}

// checkHostFacts refuses what a device says of itself when it could not be
// shown as is: it ends up in auditors' terminals and spreadsheets, so no
// control, escape or bidirectional character, and nothing long.
func checkHostFacts(h *evidentv1.HostFacts) error {
	for _, f := range []string{h.GetHostname(), h.GetGoos(), h.GetGoarch(), h.GetOsVersion(), h.GetMachineId(), h.GetSerialNumber(), h.GetAgentVersion()} {
		if len(f) > maxHostFieldBytes || !utf8.ValidString(f) || !safetext.Printable(f) {
			return status.Error(codes.InvalidArgument, "a host field is longer than 256 bytes, not UTF-8, or holds a control or escape character")
		}
	}
	return nil
}

// refreshFacts records what the agent says of its host in its Hello when
// it changed since enrollment (a serial number an older agent did not
// send, a new hostname, an upgrade). Facts that could not be shown are
// ignored (logged), as enrollment refuses them: evidence still flows. A
// new hostname or OS version can move the device in or out of a control's
// scope, so the change is audited.
func (s *Server) refreshFacts(ctx context.Context, log *slog.Logger, deviceID string, h *evidentv1.HostFacts) error {
	if h == nil {
		return nil
	}
	if err := checkHostFacts(h); err != nil {
		log.Warn("device facts ignored", "err", err)
		return nil
	}
	f := store.DeviceFacts{Hostname: h.GetHostname(), OSVersion: h.GetOsVersion(), SerialNumber: h.GetSerialNumber(), AgentVersion: h.GetAgentVersion()}
	var was store.Device
	if c, ok := callerFromContext(ctx); ok {
		was = c.dev
		if (f.Hostname == "" || f.Hostname == was.Hostname) && (f.OSVersion == "" || f.OSVersion == was.OSVersion) &&
			(f.SerialNumber == "" || f.SerialNumber == was.SerialNumber) && (f.AgentVersion == "" || f.AgentVersion == was.AgentVersion) {
			return nil // unchanged: no write
		}
	}
	changed, err := s.Store.UpdateDeviceFacts(ctx, deviceID, f)
	if err != nil {
		// The facts are a convenience: evidence still flows without them.
		log.Warn("device facts not recorded", "err", err)
		return nil
	}
	if changed {
		log.Info("device facts refreshed", "hostname", f.Hostname, "os_version", f.OSVersion, "agent_version", f.AgentVersion, "serial_number_set", f.SerialNumber != "")
	}
	var moved []string
	if f.Hostname != "" && f.Hostname != was.Hostname {
		moved = append(moved, fmt.Sprintf("hostname %q -> %q", was.Hostname, f.Hostname))
	}
	if f.OSVersion != "" && f.OSVersion != was.OSVersion {
		moved = append(moved, fmt.Sprintf("os_version %q -> %q", was.OSVersion, f.OSVersion))
	}
	if changed && len(moved) > 0 {
		entry := store.AuditEntry{Time: s.now().UTC(), Actor: "device " + deviceID, Action: "device.facts-changed",
			Detail: "device_id=" + deviceID + " " + strings.Join(moved, " ")}
		if _, err := s.Store.AddAudit(ctx, entry); err != nil {
			log.Error("auditing changed device facts failed", "err", err)
		}
	}
	return nil
}

func (s *Server) secretError(err error, h *evidentv1.HostFacts) error {
	if errors.Is(err, store.ErrNotFound) {
		s.Log.Warn("enrollment refused: bad secret", "hostname", h.GetHostname())
		return status.Error(codes.PermissionDenied, "enrollment secret is not valid: unknown, expired, revoked or already used (create one with `evident-server secret create`)")
	}
	s.Log.Error("enrollment: secret lookup", "err", err)
	return status.Error(codes.Unavailable, "enrollment temporarily unavailable")
}

// finishEnroll spends the secret, records the device (and its TPM) and
// signs its certificate.
func (s *Server) finishEnroll(ctx context.Context, req *evidentv1.EnrollRequest, tpm *store.DeviceTPM) (*evidentv1.EnrollResponse, error) {
	h := req.GetHost()
	secret, err := s.Store.UseEnrollSecret(ctx, enrolltoken.HashSecret(req.GetEnrollSecret()), s.now())
	if err != nil {
		return nil, s.secretError(err, h)
	}
	id, now := pki.NewDeviceID(), s.now()
	der, err := s.ca().SignDevice(req.GetCsr(), id)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	cert, err := certRecord(der, id, now)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "issued certificate: %v", err)
	}
	dev, err := devices.Enroll(ctx, s.Store, store.Device{
		ID: id, Hostname: h.GetHostname(), GOOS: h.GetGoos(), GOARCH: h.GetGoarch(),
		OSVersion: h.GetOsVersion(), MachineID: h.GetMachineId(), SerialNumber: h.GetSerialNumber(),
		AgentVersion: h.GetAgentVersion(), SecretID: secret.ID, EnrolledAt: now, TPM: tpm, Cert: &cert,
	})
	if err != nil {
		s.Log.Error("enrollment: store device", "err", err)
		return nil, status.Error(codes.Unavailable, "enrollment temporarily unavailable")
	}
	// The device is in the population from enrollment: its controls are
	// recorded (unknown: no report yet) so every read shows it the same way.
	if err := s.Score(ctx, dev.ID, dev.EnrolledAt); err != nil {
		s.Log.Error("enrollment: scoring failed", "device", dev.ID, "err", err)
	}
	s.metrics().enrollments.WithLabelValues(fmt.Sprint(tpm != nil)).Inc()
	s.Log.Info("device enrolled", "device", dev.ID, "hostname", dev.Hostname, "previous_device", dev.PreviousID, "secret", secret.ID, "tpm", tpm != nil)
	return &evidentv1.EnrollResponse{DeviceId: dev.ID, Certificate: der, CaBundle: s.ca().PEM()}, nil
}

// Stream implements evidentv1.EvidenceServer.
//
// A connected agent's stream is parked in Recv below this frame nearly
// all its life, and a parked goroutine keeps the stack its deepest call
// needed (the runtime halves it only while under a quarter is in use).
// So this goroutine does little itself: each message is handled on a
// fresh stack (onFreshStack), and this frame and the interceptor's are
// small (they held 3.6 KiB of locals). With both, an idle stream's
// handler stack is 8 KiB, where it was 16 (test/bench -only streams
// prints the goroutine stacks per stream: 28.3 KiB before, 20.4 after).
func (s *Server) Stream(stream grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage]) error {
	es, err := s.openStream(stream)
	if err != nil {
		return err
	}
	defer es.close()
	for {
		msg, err := stream.Recv()
		if err != nil {
			return es.ended(err)
		}
		if err := onFreshStack(func() error { return es.handle(msg) }); err != nil {
			return err
		}
	}
}

// onFreshStack runs f on a goroutine of its own and waits for it, so that
// f's deep calls (the store's: SQLite's virtual machine alone has frames
// of KiB) grow that goroutine's stack, not the caller's, which an idle
// stream keeps for hours (see Stream). Starting a goroutine costs about a
// microsecond; a report, milliseconds.
func onFreshStack(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return <-done
}

// evidenceStream is one device's open evidence stream, between its
// messages.
type evidenceStream struct {
	s        *Server
	ctx      context.Context
	deviceID string
	log      *slog.Logger
	out      *sender
	// unregister removes the stream from the replica's registry.
	unregister func()

	// stopAttest ends the attestation challenges (nil until a TPM device
	// says hello): they send on this stream, so they must be done before
	// the handler returns (close).
	stopAttest   func()
	attestations int
	started      time.Time

	// acceptsBusy: the agent's Hello said it understands Busy. After one,
	// busyFrom is the first seq of the refused report: every report that
	// starts after it was sent before the agent heard Busy and is dropped
	// (storing it would let a cumulative ack cover the refused seqs); the
	// agent's resend starts at or before it and lifts the gate.
	acceptsBusy   bool
	busyFrom      uint64
	lastCollected time.Time
	// postureSum digests the last Posture sent on the stream (0: none).
	postureSum uint64
}

// openStream starts a stream of the authenticated device. It is not
// inlined: the device's identity it reads is a large value, which would
// stay in Stream's frame.
//
//go:noinline
func (s *Server) openStream(stream grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage]) (*evidenceStream, error) {
	ctx := stream.Context()
	deviceID, ok := DeviceFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no device identity")
	}
	es := &evidenceStream{s: s, ctx: ctx, deviceID: deviceID, log: s.Log.With("device", deviceID),
		out: &sender{stream: stream}, started: time.Now()}
	es.unregister = s.registerStream(ctx, es.out)
	_ = onFreshStack(func() error {
		if latest, err := s.Store.Latest(ctx, deviceID); err == nil {
			for _, o := range latest {
				if o.CollectedAt.After(es.lastCollected) {
					es.lastCollected = o.CollectedAt
				}
			}
		}
		return nil
	})
	return es, nil
}

// close ends the stream's attestation challenges, unregisters it and
// makes later sends on it fail, in that order.
func (es *evidenceStream) close() {
	if es.stopAttest != nil {
		es.stopAttest()
	}
	es.unregister()
	es.out.close() // last: after the challenges have stopped
}

// ended is what the handler returns when Recv failed with err.
func (es *evidenceStream) ended(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	if status.Code(err) != codes.Canceled {
		es.log.Debug("stream ended", "err", err)
	}
	return err
}

// handle acts on one message of the agent; an error ends the stream.
func (es *evidenceStream) handle(msg *evidentv1.AgentMessage) error {
	s, ctx, deviceID, log, out := es.s, es.ctx, es.deviceID, es.log, es.out
	switch m := msg.Msg.(type) {
	case *evidentv1.AgentMessage_Hello:
		log.Info("agent connected", "agent_version", m.Hello.GetAgentVersion(), "last_acked_seq", m.Hello.GetLastAckedSeq())
		es.acceptsBusy = m.Hello.GetAcceptsBusy()
		if err := s.refreshFacts(ctx, log, deviceID, m.Hello.GetFacts()); err != nil {
			return err
		}
		if bundle := s.ca().PEM(); !bytes.Equal(m.Hello.GetCaBundleSha256(), sha256Of(bundle)) {
			if err := out.send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_TrustBundle{TrustBundle: &evidentv1.TrustBundle{CaBundle: bundle}}}); err != nil {
				return err
			}
		}
		if c, ok := callerFromContext(ctx); ok {
			if err := out.send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_Config{Config: s.configFor(c.dev)}}); err != nil {
				return err
			}
		}
		if es.stopAttest == nil {
			if _, err := s.Store.DeviceTPM(ctx, deviceID); err == nil {
				actx, cancel := context.WithCancel(ctx)
				stop := s.startAttesting(actx, out, deviceID)
				es.stopAttest = func() { cancel(); stop() } // the challenge in progress ends first
			}
		}
	case *evidentv1.AgentMessage_Attestation:
		// The server asks once per connection and once per attest
		// interval: a device sending many more is refused, so it cannot
		// make the server verify and store without bound.
		es.attestations++
		if allowed := 4 + int(time.Since(es.started)/s.attestEvery()); es.attestations > allowed {
			log.Warn("too many attestations on one stream; closing it", "count", es.attestations)
			return status.Errorf(codes.ResourceExhausted, "%d attestations on one stream; the server asked for at most %d", es.attestations, allowed)
		}
		res, err := s.attestation(ctx, deviceID, m.Attestation, &es.lastCollected)
		if err != nil {
			log.Error("attestation not stored", "err", err)
			return status.Error(codes.Unavailable, "store unavailable")
		}
		if err := out.send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_AttestationResult{AttestationResult: res}}); err != nil {
			return err
		}
	case *evidentv1.AgentMessage_Heartbeat:
		// Sent by agents before gRPC keepalive replaced it; nothing to do.
	case *evidentv1.AgentMessage_Report:
		return es.report(m.Report)
	default:
		return status.Error(codes.InvalidArgument, "unknown message")
	}
	return nil
}

// report stores, scores and acks one report, or asks the agent to pause.
func (es *evidenceStream) report(rep *evidentv1.Report) error {
	s, ctx, deviceID, log, out := es.s, es.ctx, es.deviceID, es.log, es.out
	first := uint64(0)
	if obs := rep.GetObservations(); len(obs) > 0 {
		first = obs[0].GetSeq()
	}
	if es.busyFrom != 0 {
		if first > es.busyFrom {
			// Sent before the agent heard Busy: it resends them.
			s.metrics().reports.WithLabelValues("deferred").Inc()
			return nil
		}
		es.busyFrom = 0
	}
	if err := s.checkQuota(ctx, deviceID, rep); err != nil {
		return err
	}
	release, err := s.admit(ctx)
	if errors.Is(err, errOverloaded) && es.acceptsBusy && first > 0 {
		// Keep the stream: a reconnect would cost this server a
		// TLS handshake while it is already short of time.
		s.metrics().reports.WithLabelValues("overloaded").Inc()
		maxObs, maxBytes := s.quotaLimits()
		s.quota.refund(deviceID, len(rep.GetObservations()), proto.Size(rep), maxObs, maxBytes)
		wait := s.busyRetry()
		es.busyFrom = first
		log.Debug("report deferred: server overloaded", "retry_after", wait.Round(time.Millisecond), "from_seq", first)
		return out.send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_Busy{Busy: &evidentv1.Busy{RetryAfter: durationpb.New(wait)}}})
	}
	if err != nil {
		s.metrics().reports.WithLabelValues("overloaded").Inc()
		log.Warn("report refused: server overloaded", "max_in_flight", cap(s.slots))
		return err
	}
	began := time.Now()
	var plan store.StatePlan
	upTo, scored, err := s.ingestReport(ctx, deviceID, rep.GetObservations(), &es.lastCollected, &plan)
	release()
	if err != nil {
		s.metrics().reports.WithLabelValues("failed").Inc()
		log.Error("ingest failed", "err", err)
		return err
	}
	s.metrics().reports.WithLabelValues("stored").Inc()
	s.metrics().ingestSeconds.Observe(time.Since(began).Seconds())
	if err := out.send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_Ack{Ack: &evidentv1.Ack{UpToSeq: upTo}}}); err != nil {
		return err
	}
	if !scored {
		return nil
	}
	goos := ""
	if c, ok := callerFromContext(ctx); ok {
		goos = c.dev.GOOS
	}
	p, sum := s.posture(&plan, goos)
	if sum == es.postureSum {
		return nil
	}
	es.postureSum = sum
	return out.send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_Posture{Posture: p}})
}

// posture is what the device is told of an evaluation: whether it is
// compliant, and each control that fails or is unknown with the reason and
// how to fix it on goos; and a digest of that (never 0), so a stream sends
// it again only when it changed.
func (s *Server) posture(plan *store.StatePlan, goos string) (*evidentv1.Posture, uint64) {
	now := make(map[string]*store.ControlState, len(plan.Confirm)+len(plan.Open))
	for i := range plan.Confirm {
		now[plan.Confirm[i].ControlID] = &plan.Confirm[i]
	}
	for i := range plan.Open {
		now[plan.Open[i].ControlID] = &plan.Open[i]
	}
	p := &evidentv1.Posture{Compliant: plan.Compliant, EvaluatedAt: timestamppb.New(plan.At)}
	h := fnv.New64a()
	fmt.Fprintf(h, "%t\x00", plan.Compliant)
	for _, c := range s.Policy.Controls {
		st := now[c.ID]
		if st == nil || (st.Status != store.Fail && st.Status != store.Unknown) {
			continue
		}
		p.Attention = append(p.Attention, &evidentv1.ControlStatus{Id: c.ID, Title: c.Title, Status: st.Status, Reason: st.Reason,
			Remediation: c.RemediationFor(goos)})
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", c.ID, st.Status, st.Reason)
	}
	return p, h.Sum64() | 1
}

// quotaLimits are the hourly allowances of one device.
func (s *Server) quotaLimits() (observations, bytes int) {
	observations, bytes = s.QuotaObservations, s.QuotaBytes
	if observations <= 0 {
		observations = DefaultQuotaObservations
	}
	if bytes <= 0 {
		bytes = DefaultQuotaBytes
	}
	return observations, bytes
}

// checkQuota refuses a report over the device's hourly allowance, with a
// retryable status (the agent keeps it and retries after a backoff), and
// records the refusal in the audit log once an hour per device.
func (s *Server) checkQuota(ctx context.Context, deviceID string, rep *evidentv1.Report) error {
	maxObs, maxBytes := s.quotaLimits()
	now := s.now()
	ok, note := s.quota.take(deviceID, len(rep.GetObservations()), proto.Size(rep), now, maxObs, maxBytes)
	if ok {
		return nil
	}
	s.metrics().reports.WithLabelValues("over_quota").Inc()
	if note {
		detail := fmt.Sprintf("device_id=%s quota=%d observations and %d bytes per hour", deviceID, maxObs, maxBytes)
		s.Log.Warn("device over its ingest quota; its reports are refused until its allowance refills", "device", deviceID,
			"observations_per_hour", maxObs, "bytes_per_hour", maxBytes)
		if _, err := s.Store.AddAudit(ctx, store.AuditEntry{Time: now.UTC(), Actor: "server", Action: "device.over-quota", Detail: detail}); err != nil {
			s.Log.Error("auditing a device over its quota failed", "err", err)
		}
	}
	return status.Errorf(codes.ResourceExhausted, "this device is over its ingest quota (%d observations or %d bytes an hour); the report was not stored: retry later", maxObs, maxBytes)
}

// ingest validates, stores and scores one report, and returns the seq to ack.
// Nothing is acked unless the whole batch is durably stored.
func (s *Server) ingest(ctx context.Context, deviceID string, in []*evidentv1.Observation, lastCollected *time.Time) (uint64, error) {
	upTo, _, err := s.ingestReport(ctx, deviceID, in, lastCollected, nil)
	return upTo, err
}

// ingestReport is ingest that also fills plan, when not nil, with the
// evaluation recorded with the report, and reports whether there was one
// (false when the report was scored on its own, or held nothing new).
func (s *Server) ingestReport(ctx context.Context, deviceID string, in []*evidentv1.Observation, lastCollected *time.Time, plan *store.StatePlan) (uint64, bool, error) {
	if len(in) == 0 {
		return 0, false, status.Error(codes.InvalidArgument, "empty report")
	}
	if len(in) > MaxBatch {
		return 0, false, status.Errorf(codes.InvalidArgument, "report holds %d observations; at most %d", len(in), MaxBatch)
	}
	received := s.now().UTC()
	out := make([]store.Observation, 0, len(in))
	var upTo uint64
	var prevSeq uint64
	for _, o := range in {
		if o.GetSeq() <= prevSeq {
			return 0, false, status.Errorf(codes.InvalidArgument, "observation seqs must increase within a report (%d after %d)", o.GetSeq(), prevSeq)
		}
		so, err := convert(o, received, lastCollected)
		if err != nil {
			// Refusing the batch would make the agent resend it forever.
			// Store what was wrong in its place instead: the seq is
			// accounted for and the problem is visible as evidence.
			s.Log.Warn("observation rejected", "device", deviceID, "seq", o.GetSeq(), "err", err)
			so = rejected(o, received, err)
		}
		if so.Seq <= prevSeq {
			return 0, false, status.Errorf(codes.InvalidArgument, "observation seqs must increase within a report (%d after %d)", so.Seq, prevSeq)
		}
		prevSeq, upTo = so.Seq, so.Seq
		out = append(out, so)
	}
	// Scored as of when the server received the evidence (or its
	// collection time, when a device clock ahead of the server's within
	// the tolerated skew put that later). As of its collection time the
	// evidence had not arrived yet, and DC-AGENT-01 could not pass: every
	// report made it unknown until the next rescore.
	at := received
	if lastCollected.After(at) {
		at = *lastCollected
	}
	var n int
	var err error
	scored := false
	if si, ok := s.Store.(store.ScoredIngester); ok {
		var scoreErr error
		n, scoreErr, err = si.IngestScored(ctx, deviceID, out, received, func(ctx context.Context, r store.ScoreReader) (store.StatePlan, error) {
			p, err := scorer.Plan(ctx, r, s.Policy, deviceID, at)
			if plan != nil && err == nil {
				*plan = p // the last try is the one recorded
			}
			return p, err
		})
		scored = err == nil && n > 0 && scoreErr == nil
		if scoreErr != nil {
			// Scored again below; a conflict is another evaluation of the
			// device landing first, anything else is worth a look.
			s.metrics().storeErrors.WithLabelValues("score_with_report").Inc()
			lvl := slog.LevelWarn
			if errors.Is(scoreErr, store.ErrConflict) {
				lvl = slog.LevelDebug
			}
			s.Log.Log(ctx, lvl, "evaluation with the report not recorded; scoring on its own", "device", deviceID, "err", scoreErr)
		}
	} else {
		n, err = s.Store.Ingest(ctx, deviceID, out, received)
	}
	m := s.metrics()
	if err != nil {
		// The agent is told only that it may retry; the operator needs the
		// cause (a full disk, a lost database connection).
		m.storeErrors.WithLabelValues("ingest").Inc()
		s.Log.Error("storing a report failed", "device", deviceID, "observations", len(out), "err", err)
		return 0, false, status.Error(codes.Unavailable, "store unavailable")
	}
	m.batchSize.Observe(float64(len(out)))
	m.observations.WithLabelValues("received").Add(float64(len(out)))
	m.observations.WithLabelValues("new").Add(float64(n))
	s.Log.Debug("report stored", "device", deviceID, "observations", len(out), "new", n, "up_to_seq", upTo, "scored", scored)
	if n > 0 && !scored {
		// Not scored with the evidence (another evaluation of the device
		// landed in between, or the store has no such transaction):
		// scored on its own, with retries.
		if err := s.Score(ctx, deviceID, at); err != nil {
			// Evidence is stored; scores can be recomputed from it.
			m.storeErrors.WithLabelValues("score").Inc()
			s.Log.Error("scoring failed", "device", deviceID, "err", err)
		}
	}
	return upTo, scored, nil
}

// Rescore evaluates every device as of now: at server start, when the
// policy may have changed.
func (s *Server) Rescore(ctx context.Context, now time.Time) error {
	devs, err := s.Store.Devices(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	_, err = s.rescore(ctx, ids, now)
	return err
}

// RescoreDue evaluates, as of now, the devices whose recorded evaluation can
// have changed with time alone (controls.RescoreAt): stored intervals go
// stale when evidence stops arriving (a silent device's "pass" becomes
// "unknown", and DC-AGENT-01 fails) instead of staying open until its next
// report. The server runs it periodically; a status change is recorded at
// now, so it is late by at most the rescore period. A device that reports
// is scored as its reports arrive and is not due. It returns how many
// devices it evaluated.
func (s *Server) RescoreDue(ctx context.Context, now time.Time) (int, error) {
	ids, err := s.Store.DevicesDue(ctx, now)
	if err != nil {
		return 0, err
	}
	return s.rescore(ctx, ids, now)
}

func (s *Server) rescore(ctx context.Context, ids []string, now time.Time) (int, error) {
	var errs []error
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return i, err // shutting down
		}
		if err := s.Score(ctx, id, now); err != nil {
			errs = append(errs, fmt.Errorf("device %s: %w", id, err))
		}
	}
	return len(ids), errors.Join(errs...)
}

// Score evaluates the policy on a device's latest evidence as of at and
// records the resulting control states.
func (s *Server) Score(ctx context.Context, deviceID string, at time.Time) error {
	return scorer.Score(ctx, s.Store, s.Policy, deviceID, at)
}

// rejectedCollector holds observations the server could not accept.
const rejectedCollector = "server.rejected"

func rejected(o *evidentv1.Observation, received time.Time, err error) store.Observation {
	name := o.GetCollector()
	if len(name) > maxCollectorName || !utf8.ValidString(name) {
		name = name[:0]
	}
	payload, _ := json.Marshal(map[string]string{"collector": name})
	return store.Observation{Seq: o.GetSeq(), Collector: rejectedCollector, CollectedAt: received, ReceivedAt: received,
		Status: string(evidence.StatusError), Error: "rejected by server: " + err.Error(), Payload: payload, Sources: []byte("[]")}
}

func convert(o *evidentv1.Observation, received time.Time, lastCollected *time.Time) (store.Observation, error) {
	switch {
	case o.GetSeq() == 0:
		return store.Observation{}, errors.New("seq must be > 0")
	case o.GetCollector() == "" || len(o.GetCollector()) > maxCollectorName:
		return store.Observation{}, errors.New("collector name missing or too long")
	case len(o.GetPayloadJson()) > MaxPayloadBytes:
		return store.Observation{}, fmt.Errorf("payload larger than %d bytes", MaxPayloadBytes)
	case len(o.GetPayloadJson()) > 0 && !json.Valid(o.GetPayloadJson()):
		return store.Observation{}, errors.New("payload is not valid JSON")
	case len(o.GetSources()) > 64:
		return store.Observation{}, errors.New("more than 64 sources")
	}
	st, ok := map[evidentv1.Observation_Status]evidence.Status{
		evidentv1.Observation_STATUS_OK:          evidence.StatusOK,
		evidentv1.Observation_STATUS_ERROR:       evidence.StatusError,
		evidentv1.Observation_STATUS_UNSUPPORTED: evidence.StatusUnsupported,
	}[o.GetStatus()]
	if !ok {
		return store.Observation{}, errors.New("status unspecified")
	}
	srcs := make([]evidence.Source, 0, len(o.GetSources()))
	for _, s := range o.GetSources() {
		cs := evidence.Source{Kind: s.GetKind(), Ref: s.GetRef(), Excerpt: s.GetExcerpt(), Error: s.GetError()}
		if s.ExitCode != nil {
			c := int(s.GetExitCode())
			cs.ExitCode = &c
		}
		srcs = append(srcs, cs)
	}
	sources, _ := json.Marshal(srcs)
	if len(sources) > MaxSourcesBytes {
		return store.Observation{}, fmt.Errorf("sources larger than %d bytes", MaxSourcesBytes)
	}
	errText := o.GetError()
	if len(errText) > maxErrorBytes {
		// Cut on a rune boundary: the stored text must stay valid UTF-8.
		cut := maxErrorBytes
		for cut > 0 && !utf8.RuneStart(errText[cut]) {
			cut--
		}
		errText = errText[:cut]
	}
	// Clock skew is itself evidence: a collected_at in the future, or well
	// before the device's previous one, is clamped and flagged.
	collected, skew := o.GetCollectedAt().AsTime().UTC(), false
	if !o.GetCollectedAt().IsValid() || collected.After(received.Add(clockSkewAhead)) {
		collected, skew = received, true
	}
	if collected.Before(lastCollected.Add(-clockSkewBehind)) {
		collected, skew = *lastCollected, true
	}
	if collected.After(*lastCollected) {
		*lastCollected = collected
	}
	return store.Observation{
		Seq: o.GetSeq(), Collector: o.GetCollector(), CollectedAt: collected, ReceivedAt: received, ClockSkew: skew,
		Status: string(st), Error: errText, ParserVersion: int(o.GetParserVersion()),
		Payload: o.GetPayloadJson(), Sources: sources, DurationMS: int(o.GetDurationMs()),
	}, nil
}

func sha256Of(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}
