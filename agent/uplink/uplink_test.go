package uplink_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/agent/uplink"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/pki"
)

// server is a real gRPC Evidence server whose replies each test scripts.
type server struct {
	evidentv1.UnimplementedEvidenceServer
	mu      sync.Mutex
	reports [][]uint64 // seqs of each report received
	reply   func(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage], seqs []uint64) error
	onHello func(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage]) error
}

func (srv *server) Stream(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage]) error {
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if m.GetHello() != nil && srv.onHello != nil {
			if err := srv.onHello(s); err != nil {
				return err
			}
		}
		r := m.GetReport()
		if r == nil {
			continue
		}
		var seqs []uint64
		for _, o := range r.GetObservations() {
			seqs = append(seqs, o.GetSeq())
		}
		srv.mu.Lock()
		srv.reports = append(srv.reports, seqs)
		srv.mu.Unlock()
		if srv.reply != nil {
			if err := srv.reply(s, seqs); err != nil {
				return err
			}
		}
	}
}

func (srv *server) received() [][]uint64 {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return append([][]uint64(nil), srv.reports...)
}

func ack(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage], n uint64) error {
	return s.Send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_Ack{Ack: &evidentv1.Ack{UpToSeq: n}}})
}

// testPKI is a server CA and a device certificate it signed.
type testPKI struct {
	ca     *pki.CA
	device tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	der, err := ca.SignDevice(csr, pki.NewDeviceID())
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, device: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// serve starts srv over loopback mTLS with a certificate naming only sans,
// and returns its address and the gRPC server (stopped at the end).
func (p *testPKI) serve(t *testing.T, srv *server, sans ...string) (string, *grpc.Server) {
	t.Helper()
	cert, err := p.ca.ServerCertificate(t.TempDir(), sans)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert},
		ClientCAs: p.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})))
	evidentv1.RegisterEvidenceServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String(), g
}

// uplink returns an uplink to servers (the server setting) for a fresh
// outbox holding n entries of size bytes each. The TLS configuration names
// no server: each address's own host is verified.
func (p *testPKI) uplink(t *testing.T, servers string, n, size int) (*uplink.Uplink, *outbox.Outbox) {
	t.Helper()
	clientTLS := &tls.Config{RootCAs: p.ca.Pool(), Certificates: []tls.Certificate{p.device}}
	ob, err := outbox.Open(filepath.Join(t.TempDir(), "outbox.db"), outbox.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	for range n {
		b, _ := proto.Marshal(&evidentv1.Observation{Collector: "c", Status: evidentv1.Observation_STATUS_OK,
			PayloadJson: []byte(`"` + strings.Repeat("x", size) + `"`)})
		if _, _, err := ob.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	up := &uplink.Uplink{Outbox: ob, Server: servers, TLS: func() (*tls.Config, error) { return clientTLS, nil },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return up, ob
}

// setup starts srv over loopback mTLS and returns an uplink for an outbox
// holding n entries of size bytes each.
func setup(t *testing.T, srv *server, n, size int) (*uplink.Uplink, *outbox.Outbox) {
	t.Helper()
	p := newPKI(t)
	addr, _ := p.serve(t, srv, "127.0.0.1")
	return p.uplink(t, addr, n, size)
}

func run(t *testing.T, up *uplink.Uplink) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = up.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCumulativeAckDrainsOutbox(t *testing.T) {
	srv := &server{reply: func(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage], seqs []uint64) error {
		return ack(s, seqs[len(seqs)-1])
	}}
	up, ob := setup(t, srv, 10, 100)
	run(t, up)
	eventually(t, "an empty outbox", func() bool { st, _ := ob.Stats(); return st.Depth == 0 })
	st, _ := ob.Stats()
	if st.LastAcked != 10 {
		t.Fatalf("last acked %d, want 10", st.LastAcked)
	}
	// Every seq sent once, in order.
	var all []uint64
	for _, r := range srv.received() {
		all = append(all, r...)
	}
	for i, s := range all {
		if s != uint64(i+1) {
			t.Fatalf("seqs sent %v; want 1..10 once each, in order", all)
		}
	}
	if up.State().LastAckSeq != 10 || !up.State().Connected {
		t.Fatalf("state %+v", up.State())
	}
}

func TestAckBeyondSentIsRefused(t *testing.T) {
	srv := &server{reply: func(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage], seqs []uint64) error {
		return ack(s, 1000) // a broken or hostile server
	}}
	up, ob := setup(t, srv, 3, 100)
	run(t, up)
	eventually(t, "the uplink to reject the ack", func() bool { return strings.Contains(up.State().LastError, "beyond what was sent") })
	if st, _ := ob.Stats(); st.Depth != 3 || st.LastAcked != 0 {
		t.Fatalf("outbox after a bogus ack: %+v; nothing may be deleted", st)
	}
}

func TestWindowBoundsUnackedReports(t *testing.T) {
	srv := &server{} // never acks
	// 400 KiB entries: two per 1 MiB batch, so 20 entries make 10 batches.
	up, ob := setup(t, srv, 20, 400<<10)
	run(t, up)
	eventually(t, "the window to fill", func() bool { return len(srv.received()) >= 4 })
	time.Sleep(200 * time.Millisecond) // would a fifth report follow?
	got := srv.received()
	if len(got) != 4 {
		t.Fatalf("%d reports in flight without an ack; want the window of 4", len(got))
	}
	for _, r := range got {
		if len(r) > uplink.MaxBatchCount {
			t.Fatalf("report of %d observations", len(r))
		}
	}
	if st, _ := ob.Stats(); st.Depth != 20 {
		t.Fatalf("unacknowledged entries were deleted: %+v", st)
	}
}

func TestCollectNowIsForwarded(t *testing.T) {
	srv := &server{onHello: func(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage]) error {
		return s.Send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_CollectNow{CollectNow: &evidentv1.CollectNow{Collectors: []string{"patches"}}}})
	}}
	up, _ := setup(t, srv, 0, 0)
	c := make(chan []string, 1)
	up.CollectNow = c
	run(t, up)
	select {
	case got := <-c:
		if len(got) != 1 || got[0] != "patches" {
			t.Fatalf("CollectNow %v", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("CollectNow never forwarded")
	}
}

// replicaStore is the database two server replicas share. It keeps the
// first copy of each seq, as the real server does by (device, seq), and
// counts the copies received after it: resends the real server ignores.
type replicaStore struct {
	mu     sync.Mutex
	stored map[uint64]int // seq: the replica that stored it
	resent map[uint64]int // seq: copies received after the stored one
}

func (rs *replicaStore) store(replica int, seqs []uint64) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, q := range seqs {
		if _, ok := rs.stored[q]; ok {
			rs.resent[q]++
			continue
		}
		rs.stored[q] = replica
	}
}

// The uplink streams to one of two replicas; that one stops mid-stream with
// observations received but unacked; the uplink reconnects to the other,
// which gets the rest. Each replica's certificate names only its own
// address's host (127.0.0.1 for one, localhost for the other), so both
// streams succeed only if each address's host is what TLS verifies.
func TestFailoverToAnotherReplica(t *testing.T) {
	p := newPKI(t)
	rs := &replicaStore{stored: map[uint64]int{}, resent: map[uint64]int{}}
	var (
		srvs    [2]*server
		grpcs   [2]*grpc.Server
		addrs   [2]string
		streams [2]atomic.Int32
		release [2]atomic.Bool // acks everything; until then, only the first report
	)
	for i, host := range []string{"127.0.0.1", "localhost"} {
		srvs[i] = &server{
			onHello: func(grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage]) error {
				streams[i].Add(1)
				return nil
			},
			reply: func(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage], seqs []uint64) error {
				rs.store(i, seqs)
				if release[i].Load() || len(srvs[i].received()) == 1 {
					return ack(s, seqs[len(seqs)-1])
				}
				return nil
			},
		}
		var lis string
		lis, grpcs[i] = p.serve(t, srvs[i], host)
		_, port, _ := net.SplitHostPort(lis)
		addrs[i] = net.JoinHostPort(host, port)
	}
	// 400 KiB entries: two per report, so 20 entries make 10 reports.
	up, ob := p.uplink(t, addrs[0]+", "+addrs[1], 20, 400<<10)
	run(t, up)

	// The first replica acks report 1 (seqs 1-2), so the window of four
	// slides to report 5: it has received seqs 1-10 and acked 2.
	first := -1
	eventually(t, "five reports at one replica", func() bool {
		for i := range srvs {
			if len(srvs[i].received()) >= 5 {
				first = i
				return true
			}
		}
		return false
	})
	other := 1 - first
	if st, _ := ob.Stats(); st.LastAcked != 2 || st.Depth != 18 {
		t.Fatalf("outbox before the stop: %+v; want seqs 3-20 pending", st)
	}
	release[other].Store(true)
	grpcs[first].Stop()

	eventually(t, "an empty outbox", func() bool { st, _ := ob.Stats(); return st.Depth == 0 })
	if st, _ := ob.Stats(); st.LastAcked != 20 {
		t.Fatalf("last acked %d, want 20", st.LastAcked)
	}
	if n := streams[first].Load(); n != 1 {
		t.Errorf("%d streams to the stopped replica, want 1", n)
	}
	if n := streams[other].Load(); n < 1 {
		t.Errorf("no stream to the surviving replica")
	}
	_, port, _ := net.SplitHostPort(addrs[other])
	if st := up.State(); !st.Connected || st.Reconnects < 1 || st.Peer != "127.0.0.1:"+port {
		t.Errorf("uplink state %+v; want connected to 127.0.0.1:%s after a reconnect", st, port)
	}

	rs.mu.Lock()
	defer rs.mu.Unlock()
	// Stored exactly once across both replicas: seqs 1-10 by the first
	// (what it received before it stopped), 11-20 by the other.
	for q := uint64(1); q <= 20; q++ {
		want := first
		if q > 10 {
			want = other
		}
		if got, ok := rs.stored[q]; !ok || got != want {
			t.Errorf("seq %d stored by replica %d (stored: %v), want replica %d", q, got, ok, want)
		}
	}
	if len(rs.stored) != 20 {
		t.Errorf("%d seqs stored, want 20: %v", len(rs.stored), rs.stored)
	}
	// The only copies beyond the stored ones are the resend after the
	// reconnect of what the first replica received but never acked: seqs
	// 3-10, once each. The real server ignores them by (device, seq).
	for q := uint64(3); q <= 10; q++ {
		if rs.resent[q] != 1 {
			t.Errorf("seq %d resent %d times, want once", q, rs.resent[q])
		}
	}
	if len(rs.resent) != 8 {
		t.Errorf("resent seqs %v, want 3-10 once each", rs.resent)
	}
}

// With the list shuffled per channel, a fleet spreads over the replicas.
// Each of 20 uplinks goes to either replica first with probability 1/2, so
// all landing on one replica has probability 2 * 2^-20 = 2^-19; without the
// shuffle, pick_first sends every one to the first address.
func TestUplinksSpreadOverReplicas(t *testing.T) {
	p := newPKI(t)
	var (
		addrs  [2]string
		hellos [2]atomic.Int32
	)
	for i := range addrs {
		addrs[i], _ = p.serve(t, &server{onHello: func(grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage]) error {
			hellos[i].Add(1)
			return nil
		}}, "127.0.0.1")
	}
	const uplinks = 20
	for range uplinks {
		up, _ := p.uplink(t, addrs[0]+","+addrs[1], 0, 0)
		run(t, up)
	}
	eventually(t, "every uplink connected", func() bool { return hellos[0].Load()+hellos[1].Load() >= uplinks })
	if a, b := hellos[0].Load(), hellos[1].Load(); a == 0 || b == 0 {
		t.Fatalf("streams per replica: %d and %d; want both used", a, b)
	}
}

func TestRunRefusesABadServerList(t *testing.T) {
	p := newPKI(t)
	up, _ := p.uplink(t, "127.0.0.1:1,,127.0.0.1:2", 0, 0)
	err := up.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `address 2 "": empty`) {
		t.Fatalf("Run = %v, want the empty entry named", err)
	}
}
