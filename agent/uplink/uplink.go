// Package uplink streams the outbox to the server over one bidirectional
// gRPC stream (mTLS) and applies the server's cumulative acks: Ack{N} means
// everything up to seq N is stored, so the outbox deletes it. After any
// reconnect it resends from the last ack + 1; the server stores by
// (device_id, seq) idempotently, so a resend never duplicates evidence.
//
// Server may list several server replicas: the stream goes to one of them
// (serverlist.NewClient: pick_first over a shuffled list), and a stream
// that breaks is reopened on whichever answers next.
package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/agent/serverlist"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// Batch bounds keep every Report far below gRPC's 4 MiB default limit.
const (
	MaxBatchBytes = 1 << 20
	MaxBatchCount = 500
	// window is how many batches may be in flight unacknowledged.
	window = 4
	// A Busy pause is kept within these bounds, whatever the server asks
	// (the server asks for at most 4.5 min: ingest.MaxBusyRetry and its
	// jitter).
	minBusyPause = 50 * time.Millisecond
	maxBusyPause = 5 * time.Minute
)

// Uplink sends the outbox to the server.
type Uplink struct {
	Outbox *outbox.Outbox
	// Server is the server setting: HOST:PORT, or several comma-separated.
	Server       string
	TLS          func() (*tls.Config, error)
	AgentVersion string
	// Facts, when set, is sent in every Hello: the server refreshes the
	// device's record from it.
	Facts *evidentv1.HostFacts
	// Posture, when set, receives the server's view of the device after
	// a report changed it. Called on the receiving goroutine: it must not
	// block.
	Posture func(*evidentv1.Posture)
	Log     *slog.Logger
	// CollectNow receives the server's requests to collect immediately.
	CollectNow chan<- []string
	// Challenges receives the server's attestation challenges; nil ignores
	// them (a device without a TPM).
	Challenges chan<- *evidentv1.AttestationChallenge
	// AttestationResults receives what the server concluded of each
	// attestation; nil ignores them.
	AttestationResults chan<- *evidentv1.AttestationResult
	// TrustHash gives the SHA-256 of the agent's CA bundle, sent in Hello;
	// TrustBundle takes the bundle the server sends (a CA rollover). Nil
	// leaves both out.
	TrustHash   func() []byte
	TrustBundle func([]byte)
	// Configs receives the collection schedule the server pushes after
	// each Hello (a channel of capacity 1: an unread one is replaced by
	// the newer); nil ignores them.
	Configs chan *evidentv1.Config

	wake     chan struct{}
	redial   chan struct{}
	running  atomic.Bool
	outgoing chan *evidentv1.AgentMessage
	once     sync.Once

	mu    sync.Mutex
	state State
	subs  []chan struct{}
}

// State is what status reports about the uplink.
type State struct {
	Connected bool `json:"connected"`
	// Peer is the address of the server the current (or last) stream
	// connected to.
	Peer        string    `json:"peer,omitempty"`
	LastAckSeq  uint64    `json:"last_ack_seq"`
	LastAckAt   time.Time `json:"last_ack_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Reconnects  int       `json:"reconnects"`
	SentBatches uint64    `json:"sent_batches"`
	ConnectedAt time.Time `json:"connected_at,omitzero"`
	NextRetryIn string    `json:"next_retry_in,omitempty"`
	// Busy counts the server's Busy answers (overloaded: wait, then
	// resend on the same stream); LastBusyAt is the latest.
	Busy       int       `json:"busy"`
	LastBusyAt time.Time `json:"last_busy_at,omitzero"`
}

// State returns a copy of the uplink's state.
func (u *Uplink) State() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state
}

func (u *Uplink) setState(f func(*State)) {
	u.mu.Lock()
	f(&u.state)
	u.mu.Unlock()
}

func (u *Uplink) init() {
	u.once.Do(func() {
		u.wake = make(chan struct{}, 1)
		u.redial = make(chan struct{}, 1)
		u.outgoing = make(chan *evidentv1.AgentMessage, 4)
	})
}

// SendAttestation queues an attestation for the current (or next) stream.
// It never blocks: when the queue is full the attestation is dropped and
// false returned (the server challenges again).
func (u *Uplink) SendAttestation(a *evidentv1.Attestation) bool {
	u.init()
	select {
	case u.outgoing <- &evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Attestation{Attestation: a}}:
		return true
	default:
		return false
	}
}

// Wake tells the uplink new entries are in the outbox.
func (u *Uplink) Wake() {
	u.init()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// RecordBytes bounds what the agent writes to its TLS connection at once,
// and so the TLS records the server receives. crypto/tls keeps a
// connection's read buffer at the size of the largest record it has read,
// for the connection's life: a server holding tens of thousands of idle
// agent connections holds one such buffer each. Records of 16 KiB (what a
// report of a few collectors is sent in otherwise) left 10 to 28 KiB per
// connection; 2 KiB records leave at most a few KiB, for a record header
// and tag (22 bytes) every 2 KiB sent.
const RecordBytes = 2 << 10

// KeepaliveEvery is how long an idle connection stays silent before the
// agent pings the server (HTTP/2 PING; 20 s to answer). It keeps the
// connection's NAT and load-balancer state alive (the shortest common idle
// timeouts are 4 minutes) and finds a dead server. An idle agent sends
// nothing else: no heartbeat messages, which cost the server a handler
// wakeup and a flow-control reply each (at 50,000 agents a message a
// minute each was most of an idle fleet's server CPU).
const KeepaliveEvery = 3 * time.Minute

// DialOptions are the agent's connection settings, apart from its
// credentials: message limits, keepalive, and writes in RecordBytes
// (the buffer goes back to a shared pool after each flush, so an idle
// agent holds none).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(4<<20), grpc.MaxCallRecvMsgSize(4<<20)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveEvery, Timeout: 20 * time.Second}),
		grpc.WithWriteBufferSize(RecordBytes),
		grpc.WithSharedWriteBuffer(true),
	}
}

// errRedial ends a session on Redial.
var errRedial = errors.New("redialling with new credentials")

// Redial closes the current connection and connects again with a fresh
// TLS configuration (u.TLS): after a certificate renewal, so the server
// sees the new certificate at once. Nothing is lost: what was not acked is
// resent on the new stream.
func (u *Uplink) Redial() {
	u.init()
	if !u.running.Load() {
		return // the first dial will use the new credentials
	}
	select {
	case u.redial <- struct{}{}:
	default:
	}
}

// Run connects and streams until ctx ends, reconnecting with exponential
// backoff and jitter (1 s to 1 min). It returns ctx's error.
func (u *Uplink) Run(ctx context.Context) error {
	u.init()
	u.running.Store(true)
	defer u.running.Store(false)
	servers, err := serverlist.Parse(u.Server)
	if err != nil {
		return fmt.Errorf("server address %q: %w", u.Server, err)
	}
	for {
		tlsConf, err := u.TLS()
		if err != nil {
			return err
		}
		conn, err := serverlist.NewClient(servers, append(DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)))...)
		if err != nil {
			return fmt.Errorf("server address %q: %w", u.Server, err)
		}
		err = u.runConn(ctx, evidentv1.NewEvidenceClient(conn))
		conn.Close()
		if !errors.Is(err, errRedial) {
			return err
		}
		u.Log.Info("reconnecting with the renewed device certificate")
	}
}

// runConn streams over one connection until ctx ends or Redial is called.
func (u *Uplink) runConn(ctx context.Context, client evidentv1.EvidenceClient) error {
	backoff := time.Second
	for {
		began := time.Now()
		acked, server, err := u.session(ctx, client)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errRedial) {
			return err
		}
		// A stream that delivered, or lived a while, was healthy: start the
		// backoff over.
		if acked || time.Since(began) > time.Minute {
			backoff = time.Second
		}
		// Full jitter: spread a fleet's reconnects after a server restart.
		wait := backoff/2 + rand.N(backoff/2+1)
		u.setState(func(s *State) {
			s.Connected = false
			s.Reconnects++
			s.LastError, s.LastErrorAt = describe(err), time.Now()
			s.NextRetryIn = wait.Round(time.Millisecond).String()
		})
		if server == "" { // no stream: no server of the list answered
			server = u.Server
		}
		u.Log.Warn("evidence stream interrupted; will retry", "server", server, "err", describe(err), "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-u.redial:
			return errRedial
		case <-time.After(wait):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

func describe(err error) string {
	if err == nil {
		return "stream closed by server"
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	return err.Error()
}

// session runs one stream. It reports whether the server acked anything,
// and the address of the server it streamed to ("" if none).
func (u *Uplink) session(ctx context.Context, client evidentv1.EvidenceClient) (bool, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Stream(ctx)
	if err != nil {
		return false, "", err
	}
	st, err := u.Outbox.Stats()
	if err != nil {
		return false, "", err
	}
	hello := &evidentv1.Hello{AgentVersion: u.AgentVersion, LastAckedSeq: st.LastAcked, AcceptsBusy: true, Facts: u.Facts}
	if u.TrustHash != nil {
		hello.CaBundleSha256 = u.TrustHash()
	}
	if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Hello{Hello: hello}}); err != nil {
		return false, "", err
	}
	// The stream's transport is the connection pick_first chose: its peer
	// is the server of the list this stream went to.
	server := "unknown"
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		server = p.Addr.String()
	}
	u.setState(func(s *State) { s.Connected, s.Peer, s.ConnectedAt, s.NextRetryIn = true, server, time.Now(), "" })
	u.Log.Info("evidence stream connected", "server", server, "last_acked_seq", st.LastAcked, "pending", st.Depth)
	acked, err := u.exchange(ctx, stream, st.LastAcked)
	return acked, server, err
}

// exchange sends the outbox on stream from lastAcked + 1 and applies the
// server's acks until the stream or ctx ends.
func (u *Uplink) exchange(ctx context.Context, stream grpc.BidiStreamingClient[evidentv1.AgentMessage, evidentv1.ServerMessage], lastAcked uint64) (bool, error) {
	acks := make(chan uint64, window*2)
	busy := make(chan time.Duration, 1)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			switch msg := m.Msg.(type) {
			case *evidentv1.ServerMessage_Ack:
				select {
				case acks <- msg.Ack.GetUpToSeq():
				case <-ctx.Done():
					return
				}
			case *evidentv1.ServerMessage_Busy:
				// Keep the longer of a pending pause and this one.
				d := msg.Busy.GetRetryAfter().AsDuration()
				select {
				case prev := <-busy:
					d = max(d, prev)
				default:
				}
				busy <- d // the only sender, and the buffer was just emptied
			case *evidentv1.ServerMessage_AttestationChallenge:
				if u.Challenges != nil {
					select {
					case u.Challenges <- msg.AttestationChallenge:
					default:
						u.Log.Warn("attestation challenge dropped: one is already being answered")
					}
				}
			case *evidentv1.ServerMessage_AttestationResult:
				if u.AttestationResults != nil {
					select {
					case u.AttestationResults <- msg.AttestationResult:
					default:
					}
				}
			case *evidentv1.ServerMessage_TrustBundle:
				if u.TrustBundle != nil {
					u.TrustBundle(msg.TrustBundle.GetCaBundle())
				}
			case *evidentv1.ServerMessage_Config:
				if u.Configs != nil {
					select {
					case u.Configs <- msg.Config:
					default:
						select { // replace the unread, older one
						case <-u.Configs:
						default:
						}
						select {
						case u.Configs <- msg.Config:
						default:
						}
					}
				}
			case *evidentv1.ServerMessage_Posture:
				if u.Posture != nil {
					u.Posture(msg.Posture)
				}
			case *evidentv1.ServerMessage_CollectNow:
				if u.CollectNow != nil {
					select {
					case u.CollectNow <- msg.CollectNow.GetCollectors():
					default:
					}
				}
			}
		}
	}()

	// sent is the last seq sent since the last rewind, highest the last
	// ever sent on this stream (what an ack may reach).
	sent, acked, highest := lastAcked, lastAcked, lastAcked
	gotAck := false
	var inflight []uint64 // last seq of each batch in flight
	// While paused (the server said Busy), nothing is sent; at resume
	// the reports after the last ack are sent again.
	var resume <-chan time.Time
	var resumeTimer *time.Timer
	var resumeAt time.Time
	defer func() {
		if resumeTimer != nil {
			resumeTimer.Stop()
		}
	}()
	for {
		// Fill the window.
		for resume == nil && len(inflight) < window {
			entries, err := u.Outbox.Pending(sent, MaxBatchBytes, MaxBatchCount)
			if err != nil {
				return gotAck, err
			}
			if len(entries) == 0 {
				break
			}
			rep := &evidentv1.Report{Observations: make([]*evidentv1.Observation, 0, len(entries))}
			for _, e := range entries {
				var o evidentv1.Observation
				if err := proto.Unmarshal(e.Data, &o); err != nil {
					// A corrupt entry cannot be sent; say so instead of
					// blocking the queue forever.
					o = evidentv1.Observation{Collector: "agent.outbox", Status: evidentv1.Observation_STATUS_ERROR,
						Error: "outbox entry unreadable: " + err.Error()}
				}
				o.Seq = e.Seq
				rep.Observations = append(rep.Observations, &o)
			}
			if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: rep}}); err != nil {
				return gotAck, err
			}
			sent = entries[len(entries)-1].Seq
			highest = max(highest, sent)
			inflight = append(inflight, sent)
			u.setState(func(s *State) { s.SentBatches++ })
		}
		select {
		case <-ctx.Done():
			return gotAck, ctx.Err()
		case err := <-recvErr:
			return gotAck, err
		case <-u.wake:
		case d := <-busy:
			d = min(max(d, minBusyPause), maxBusyPause)
			d += rand.N(d/5 + 1) // spread the fleet's return
			u.setState(func(s *State) { s.Busy++; s.LastBusyAt = time.Now() })
			u.Log.Debug("server busy: pausing reports", "for", d.Round(time.Millisecond), "last_acked_seq", acked)
			switch until := time.Now().Add(d); {
			case resume == nil:
				resumeTimer, resumeAt = time.NewTimer(d), until
				resume = resumeTimer.C
			case until.After(resumeAt):
				// A later Busy asks for longer: resume at the later time.
				resumeTimer.Reset(d)
				resumeAt = until
			}
		case <-resume:
			// What the server refused, and whatever it dropped while busy,
			// is sent again; seqs it had stored are acked, not stored twice.
			resume, sent, inflight = nil, acked, nil
		case <-u.redial:
			return gotAck, errRedial
		case m := <-u.outgoing:
			if err := stream.Send(m); err != nil {
				return gotAck, err
			}
		case n := <-acks:
			if n < acked {
				continue
			}
			if n > highest {
				return gotAck, status.Errorf(codes.Internal, "server acked seq %d beyond what was sent (%d)", n, highest)
			}
			if err := u.Outbox.Ack(n); err != nil && !errors.Is(err, context.Canceled) {
				return gotAck, err
			}
			acked, gotAck = n, true
			sent = max(sent, n)
			for len(inflight) > 0 && inflight[0] <= n {
				inflight = inflight[1:]
			}
			u.setState(func(s *State) { s.LastAckSeq, s.LastAckAt = n, time.Now() })
			u.notifyAck(n)
		}
	}
}

// AckNotify returns a channel that receives a value (coalesced) after each
// ack the uplink applies: `run --once` waits on it for an empty outbox.
func (u *Uplink) AckNotify() <-chan struct{} {
	c := make(chan struct{}, 1)
	u.mu.Lock()
	u.subs = append(u.subs, c)
	u.mu.Unlock()
	return c
}

func (u *Uplink) notifyAck(uint64) {
	u.mu.Lock()
	subs := u.subs
	u.mu.Unlock()
	for _, c := range subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
