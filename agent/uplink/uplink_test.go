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

// setup starts srv over loopback mTLS and returns an uplink for an outbox
// holding n entries of size bytes each.
func setup(t *testing.T, srv *server, n, size int) (*uplink.Uplink, *outbox.Outbox) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate(filepath.Join(dir, "pki"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert},
		ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})))
	evidentv1.RegisterEvidenceServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	der, err := ca.SignDevice(csr, pki.NewDeviceID())
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}

	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"), outbox.Options{NoSync: true})
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
	up := &uplink.Uplink{Outbox: ob, Server: lis.Addr().String(), TLS: func() (*tls.Config, error) { return clientTLS, nil },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return up, ob
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
