//go:build linux

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/agent/uplink"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

const (
	agentVersion = "evident-load"
	// maxBacklog bounds the cycles a device keeps while the server does
	// not take them (the agent's outbox is bounded by size instead); a
	// cycle beyond it is skipped and counted as an error.
	maxBacklog = 256
	// drainBackoff caps the retry wait once the run is stopping, so
	// devices refused at the end deliver within the drain.
	drainBackoff = 5 * time.Second
)

// device is one simulated agent: its own key and certificate from the real
// Enrollment RPC, then its own mTLS connection holding one evidence stream,
// over which it sends its replayed collection cycle every interval with up
// to window reports unacknowledged, as the agent's uplink does.
type device struct {
	w      *worker
	index  int // global, across workers
	target string
	cycle  template

	id   string
	cert tls.Certificate
	ca   *x509.CertPool

	queue    []*pending // cycles not yet acknowledged, oldest first
	nextSeq  uint64
	sentSeq  uint64 // highest seq ever sent
	ackedSeq uint64
	ackedObs uint64
}

// pending is a report waiting for its ack.
type pending struct {
	msg    *evidentv1.AgentMessage
	last   uint64 // seq of its last observation
	n      int
	sentAt time.Time
}

// result is what the exactly-once check needs of a device.
type result struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Target   string `json:"target"`
	AckedSeq uint64 `json:"acked_seq"`
	AckedObs uint64 `json:"acked_obs"`
	SentSeq  uint64 `json:"sent_seq"`
	// Unacked counts observations sent but never acknowledged (the drain
	// ran out): the store may hold any of them.
	Unacked uint64 `json:"unacked"`
}

func (d *device) result() result {
	r := result{Index: d.index, ID: d.id, Target: d.target, AckedSeq: d.ackedSeq, AckedObs: d.ackedObs, SentSeq: d.sentSeq}
	for _, p := range d.queue {
		if p.last <= d.sentSeq {
			r.Unacked += uint64(p.n)
		}
	}
	return r
}

// run enrolls, then streams until the run stops and every report sent is
// acknowledged (or the drain runs out). It reports whether the device
// enrolled.
func (d *device) run() bool {
	if !d.enrollRetrying() {
		return false
	}
	d.stream()
	return true
}

// kind names an error for the counters: the phase and the gRPC code, with
// overload refusals apart.
func kind(phase string, err error) string {
	if errors.Is(err, io.EOF) {
		return phase + ": closed by the server"
	}
	s, ok := status.FromError(err)
	if !ok {
		return phase + ": other"
	}
	if s.Code() == codes.Unavailable && strings.Contains(s.Message(), "overloaded") {
		return phase + ": Unavailable " + overloadKind
	}
	return phase + ": " + s.Code().String()
}

// retryable reports whether an agent would try the call again.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// backoff is the agent's retry wait: full jitter over [b/2, b].
func backoff(b time.Duration) time.Duration { return b/2 + mrand.N(b/2+1) }

// enrollRetrying enrolls, retrying what an agent would retry, until it
// succeeds or the run stops.
func (d *device) enrollRetrying() bool {
	wait := time.Second
	for {
		var took time.Duration
		err := d.w.enrollSlot(func() error {
			t0 := time.Now()
			err := d.enroll()
			took = time.Since(t0)
			return err
		})
		if err == nil {
			d.w.meter.enrolledNow(time.Now(), took)
			return true
		}
		if d.w.stopping() {
			d.w.meter.enrollFailed.Add(1)
			return false
		}
		d.w.failed("enroll", err)
		if !retryable(err) {
			d.w.meter.enrollFailed.Add(1)
			return false
		}
		select {
		case <-d.w.stop:
		case <-time.After(backoff(wait)):
		}
		wait = min(2*wait, time.Minute)
	}
}

// enroll makes a fresh P-256 key and enrolls it with the real Enrollment
// RPC, over a connection of its own as an agent does.
func (d *device) enroll() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	hostname := fmt.Sprintf("load-%06d", d.index)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hostname}}, key)
	if err != nil {
		return err
	}
	// Distinct machine ids: devices sharing one would be linked as one
	// machine's re-enrollments.
	mid := make([]byte, 16)
	_, _ = rand.Read(mid)
	conn, err := d.w.dial(d.index, d.target, d.w.enrollTLS(d.target))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(d.w.hard, 30*time.Second)
	defer cancel()
	resp, err := evidentv1.NewEnrollmentClient(conn).Enroll(ctx, &evidentv1.EnrollRequest{
		EnrollSecret: d.w.cfg.Secret, Csr: csr,
		Host: &evidentv1.HostFacts{Hostname: hostname, Goos: d.cycle.goos, Goarch: d.cycle.goarch, MachineId: hex.EncodeToString(mid),
			SerialNumber: fmt.Sprintf("LOAD%08d", d.index), AgentVersion: agentVersion},
	})
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return fmt.Errorf("the server returned an unreadable certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("the server returned a certificate for another key")
	}
	if d.ca, err = d.w.streamCA(resp.GetCaBundle()); err != nil {
		return err
	}
	d.id, d.cert = resp.GetDeviceId(), tls.Certificate{Certificate: [][]byte{resp.GetCertificate()}, PrivateKey: key, Leaf: leaf}
	return nil
}

// session is one evidence stream; queue[:inflight] were sent on it.
type session struct {
	stream   grpc.BidiStreamingClient[evidentv1.AgentMessage, evidentv1.ServerMessage]
	cancel   context.CancelFunc
	events   chan event
	inflight int
	// broken: a send failed; the receiver's error says why.
	broken bool
	// resume is set while the server's Busy pause runs: nothing is sent,
	// and at its end everything unacknowledged is sent again.
	resume   <-chan time.Time
	resumeAt time.Time
}

// event is what the receiver passes on: an ack, a Busy answer or the
// stream's end.
type event struct {
	ack  uint64
	busy time.Duration
	err  error
}

// stream holds the device's evidence stream: a report every interval from
// a jittered start, reconnecting with the agent's backoff, until the run
// stops and the queue is acknowledged.
func (d *device) stream() {
	w := d.w
	host, _, _ := net.SplitHostPort(d.target)
	conf := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: d.ca, ServerName: host, Certificates: []tls.Certificate{d.cert}}
	conn, err := w.dial(d.index, d.target, conf)
	if err != nil {
		w.failed("stream", err)
		return
	}
	defer conn.Close()
	client := evidentv1.NewEvidenceClient(conn)

	next := time.NewTimer(mrand.N(w.cfg.Interval))
	defer next.Stop()
	var s *session
	var retry <-chan time.Time // set while waiting to reconnect
	wait, maxWait := time.Second, time.Minute
	later := func(err error) { // count err and retry after the backoff
		w.failed("stream", err)
		retry = time.After(backoff(wait))
		wait = min(2*wait, maxWait)
	}
	drop := func(err error) { // end the session on err
		s.cancel()
		w.meter.streams.Add(-1)
		s = nil
		later(err)
	}
	// A failed send ends the stream; the receiver then reports why. Any
	// other send error leaves the stream up, so end it here.
	sendFailed := func(err error) {
		if errors.Is(err, io.EOF) {
			s.broken = true
		} else {
			drop(err)
		}
	}
	stop := w.stop
	for {
		stopping := stop == nil
		if s == nil && retry == nil && (!stopping || len(d.queue) > 0) {
			if s, err = d.open(client); err != nil {
				later(err)
			}
		}
		if s != nil && !s.broken && s.resume == nil {
			if err := d.fill(s); err != nil {
				sendFailed(err)
			}
		}
		if stopping && len(d.queue) == 0 {
			if s != nil {
				d.close(s)
			}
			return
		}
		var events chan event
		var resume <-chan time.Time
		if s != nil {
			events, resume = s.events, s.resume
		}
		select {
		case <-w.hard.Done():
			if s != nil {
				s.cancel()
				w.meter.streams.Add(-1)
			}
			return
		case <-stop:
			stop, maxWait = nil, drainBackoff
			if retry != nil {
				retry = time.After(backoff(min(wait, drainBackoff)))
			}
		case now := <-next.C:
			if !stopping {
				d.enqueue(now)
				next.Reset(w.cfg.Interval)
			}
		case <-retry:
			retry = nil
		case <-resume:
			s.resume, s.inflight = nil, 0 // resend what the server dropped
		case ev := <-events:
			if ev.busy > 0 {
				w.meter.fail("server busy: paused, then resent on the same stream")
				d := ev.busy + mrand.N(ev.busy/5+1)
				if until := time.Now().Add(d); s.resume == nil || until.After(s.resumeAt) {
					s.resume, s.resumeAt = time.After(d), until // the later of the two pauses
				}
				continue
			}
			if ev.err == nil {
				ev.err = d.ack(s, ev.ack)
			}
			if ev.err != nil {
				drop(ev.err)
			} else {
				wait = time.Second // a stream that delivers is healthy
			}
		}
	}
}

// open starts a stream and says hello with the last acknowledged seq.
func (d *device) open(client evidentv1.EvidenceClient) (*session, error) {
	ctx, cancel := context.WithCancel(d.w.hard)
	stream, err := client.Stream(ctx)
	if err == nil {
		err = stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Hello{Hello: &evidentv1.Hello{AgentVersion: agentVersion, LastAckedSeq: d.ackedSeq, AcceptsBusy: !d.w.cfg.NoBusy}}})
	}
	if err != nil {
		cancel()
		return nil, err
	}
	s := &session{stream: stream, cancel: cancel, events: make(chan event, d.w.cfg.Window+1)}
	d.w.meter.streams.Add(1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				s.events <- event{err: err}
				return
			}
			var ev event
			switch {
			case m.GetAck() != nil:
				ev.ack = m.GetAck().GetUpToSeq()
			case m.GetBusy() != nil:
				ev.busy = max(m.GetBusy().GetRetryAfter().AsDuration(), time.Millisecond)
			default:
				continue
			}
			select {
			case s.events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return s, nil
}

// enqueue adds one collection cycle with fresh seqs and collected_at.
func (d *device) enqueue(now time.Time) {
	if len(d.queue) >= maxBacklog {
		d.w.meter.fail("cycle skipped: backlog full")
		return
	}
	r := d.cycle.report(d.nextSeq+1, now)
	d.nextSeq += uint64(len(r.Observations))
	d.queue = append(d.queue, &pending{msg: &evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: r}}, last: d.nextSeq, n: len(r.Observations)})
}

// fill sends queued reports until window are in flight.
func (d *device) fill(s *session) error {
	for s.inflight < d.w.cfg.Window && s.inflight < len(d.queue) {
		p := d.queue[s.inflight]
		d.sentSeq = max(d.sentSeq, p.last)
		p.sentAt = time.Now()
		if err := s.stream.Send(p.msg); err != nil {
			return err
		}
		s.inflight++
		d.w.meter.sent.Add(1)
	}
	return nil
}

// ack applies a cumulative ack: every report in flight up to seq n is
// stored.
func (d *device) ack(s *session, n uint64) error {
	if n > d.sentSeq {
		return status.Errorf(codes.Internal, "server acked seq %d beyond what was sent (%d)", n, d.sentSeq)
	}
	now := time.Now()
	for s.inflight > 0 && d.queue[0].last <= n {
		p := d.queue[0]
		d.w.meter.acked(p.n, now.Sub(p.sentAt))
		d.ackedObs += uint64(p.n)
		d.queue[0] = nil
		d.queue = d.queue[1:]
		s.inflight--
	}
	d.ackedSeq = max(d.ackedSeq, n)
	return nil
}

// close ends a drained stream cleanly: half-close, then wait for the
// server to end it.
func (d *device) close(s *session) {
	defer d.w.meter.streams.Add(-1)
	defer s.cancel()
	if err := s.stream.CloseSend(); err != nil {
		d.w.failed("close", err)
		return
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case ev := <-s.events:
			if ev.err == nil {
				continue
			}
			if errors.Is(ev.err, io.EOF) {
				d.w.meter.closed.Add(1)
			} else {
				d.w.failed("close", ev.err)
			}
			return
		case <-t.C:
			d.w.meter.fail("close: no end of stream from the server within 10s")
			return
		case <-d.w.hard.Done():
			return
		}
	}
}

// dialOptions are the agent's connection settings (uplink.DialOptions:
// what the server receives is what real agents send), without a read
// buffer: a generator holding thousands of connections would otherwise
// spend 32 KiB on each.
func dialOptions(i int, target string, conf *tls.Config, spread bool) []grpc.DialOption {
	return append(uplink.DialOptions(),
		grpc.WithTransportCredentials(credentials.NewTLS(conf)),
		grpc.WithContextDialer(dialer(i, target, spread)),
		grpc.WithReadBufferSize(0),
	)
}

// pinnedTLS is the agent's first-contact trust: the CA pinned in the
// enrollment token.
func pinnedTLS(target, pin string) *tls.Config {
	host, _, _ := net.SplitHostPort(target)
	return identity.PinnedTLS(host, pin)
}
