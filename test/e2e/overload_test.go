package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/agent/uplink"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/ingest/ingesttest"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestOverloadIsRetryable: a server that can store one report at a time and
// lets none wait refuses reports with a retryable status while real agents
// (uplink + bbolt outbox, over mTLS) keep sending; the agents back off and
// retry, and in the end every observation is stored exactly once and every
// outbox is drained.
func TestOverloadIsRetryable(t *testing.T) {
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := ingesttest.Start(t, &ingest.Server{Store: st, MaxInFlight: 1, QueueWait: time.Millisecond, BusyRetry: 20 * time.Millisecond})
	ca := srv.CA

	const agents, perAgent = 6, 30
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type agent struct {
		id string
		ob *outbox.Outbox
		up *uplink.Uplink
	}
	var all []agent
	var runs sync.WaitGroup
	for i := range agents {
		id, conf := enrolledDevice(t, st, ca, fmt.Sprintf("busy-%d", i))
		d := store.Device{ID: id}
		ob, err := outbox.Open(filepath.Join(dir, d.ID+".db"), outbox.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer ob.Close()
		up := &uplink.Uplink{Outbox: ob, Server: srv.Addr, TLS: func() (*tls.Config, error) { return conf, nil },
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		runs.Add(1)
		go func() { defer runs.Done(); _ = up.Run(ctx) }()
		all = append(all, agent{d.ID, ob, up})
	}
	defer func() { cancel(); runs.Wait() }()
	// Every agent appends its observations one at a time, so many small
	// reports compete for the one slot.
	var appends sync.WaitGroup
	for _, a := range all {
		appends.Add(1)
		go func() {
			defer appends.Done()
			for range perAgent {
				b, _ := proto.Marshal(&evidentv1.Observation{Collector: "osinfo", Status: evidentv1.Observation_STATUS_OK,
					CollectedAt: timestamppb.Now(), PayloadJson: []byte(`{}`)})
				if _, _, err := a.ob.Append(b); err != nil {
					t.Error(err)
					return
				}
				a.up.Wake()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	appends.Wait()
	deadline := time.Now().Add(3 * time.Minute)
	for _, a := range all {
		for {
			s, err := a.ob.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if s.Depth == 0 && s.LastAcked == perAgent {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent %s: outbox %+v after 3 min; uplink %+v", a.id, s, a.up.State())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The agents understand Busy: the server keeps their streams and
	// they wait and resend on them.
	refused := 0
	for _, a := range all {
		st := a.up.State()
		if st.Busy > 0 {
			refused++
		}
		if st.Reconnects > 0 {
			t.Errorf("agent %s reconnected %d times (last error %q): Busy should have kept its stream", a.id, st.Reconnects, st.LastError)
		}
	}
	if refused == 0 {
		t.Error("no agent was told Busy: the test did not overload the server")
	}
	for _, a := range all {
		c, err := st.Counts(ctx, a.id)
		if err != nil {
			t.Fatal(err)
		}
		if c.Total != perAgent || c.MinSeq != 1 || c.MaxSeq != perAgent {
			t.Errorf("agent %s: stored %d observations, seq %d-%d; want exactly %d, 1-%d", a.id, c.Total, c.MinSeq, c.MaxSeq, perAgent, perAgent)
		}
	}
	t.Logf("%d of %d agents were told Busy at least once and resent on the same stream", refused, agents)
}

// enrolledDevice enrolls a device in st and returns its id and a client
// TLS configuration with a certificate ca issued it.
func enrolledDevice(t *testing.T, st store.Enrollment, ca *pki.CA, hostname string) (string, *tls.Config) {
	t.Helper()
	d, err := st.EnrollDevice(context.Background(), store.Device{ID: pki.NewDeviceID(), Hostname: hostname, GOOS: "linux", EnrolledAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	der, err := ca.SignDevice(csr, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	return d.ID, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// gatedStore holds the first Ingest until release
// is closed: a report that keeps the server's only slot taken.
type gatedStore struct {
	ingest.Store
	once    sync.Once
	held    chan struct{} // closed when an Ingest is being held
	release chan struct{}
}

func (g *gatedStore) Ingest(ctx context.Context, deviceID string, obs []store.Observation, received time.Time) (int, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.held)
		<-g.release
	}
	return g.Store.Ingest(ctx, deviceID, obs, received)
}

// TestBusyKeepsTheStream: with the server's one slot held by a report, an
// agent whose Hello accepts Busy is answered Busy (the stream stays open,
// reports it sends during the pause are dropped, and after the pause it
// resends and is acked; reports that follow the refused one are dropped
// until the resend), while a client that does not accept Busy gets
// the old answer: the stream ends with UNAVAILABLE.
func TestBusyKeepsTheStream(t *testing.T) {
	dir := t.TempDir()
	sq, err := sqlite.Open(filepath.Join(dir, "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	st := &gatedStore{Store: sq, held: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once // a failing test must not leave the handler held
	defer releaseOnce.Do(func() { close(st.release) })
	const retry = 300 * time.Millisecond
	srv := ingesttest.Start(t, &ingest.Server{Store: st, MaxInFlight: 1, QueueWait: 10 * time.Millisecond, BusyRetry: retry})
	report := func(seqs ...uint64) *evidentv1.AgentMessage {
		rep := &evidentv1.Report{}
		for _, s := range seqs {
			rep.Observations = append(rep.Observations, &evidentv1.Observation{Seq: s, Collector: "osinfo",
				CollectedAt: timestamppb.Now(), Status: evidentv1.Observation_STATUS_OK, PayloadJson: []byte(`{}`)})
		}
		return &evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: rep}}
	}
	open := func(hostname string, acceptsBusy bool) (string, evidentv1.Evidence_StreamClient) {
		id, conf := enrolledDevice(t, sq, srv.CA, hostname)
		stream, err := openStream(t, srv.Addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Hello{Hello: &evidentv1.Hello{AcceptsBusy: acceptsBusy}}}); err != nil {
			t.Fatal(err)
		}
		return id, stream
	}
	recv := recvAnswer

	_, holder := open("holder", true)
	if err := holder.Send(report(1)); err != nil {
		t.Fatal(err)
	}
	<-st.held // the one slot is taken

	_, old := open("old-agent", false)
	if err := old.Send(report(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(old); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "overloaded") {
		t.Fatalf("a client without accepts_busy got %v; want the stream ended with UNAVAILABLE, overloaded", err)
	}

	id, busy := open("new-agent", true)
	if err := busy.Send(report(1)); err != nil {
		t.Fatal(err)
	}
	m, err := recv(busy)
	if err != nil || m.GetBusy() == nil {
		t.Fatalf("an agent accepting Busy got %v, %v; want Busy", m, err)
	}
	told := time.Now()
	if d := m.GetBusy().GetRetryAfter().AsDuration(); d < retry || d > retry*3/2 {
		t.Errorf("retry_after %s; want %s to %s", d, retry, retry*3/2)
	}
	// What an agent had in flight behind the refused report (seqs after
	// it) is dropped, during the pause and after it alike: a late one
	// stored would let its cumulative ack cover seq 1, never stored.
	if err := busy.Send(report(2)); err != nil {
		t.Fatal(err)
	}
	releaseOnce.Do(func() { close(st.release) })
	if m, err := recv(holder); err != nil || m.GetAck().GetUpToSeq() != 1 {
		t.Fatalf("the held report: %v, %v; want ack 1", m, err)
	}
	time.Sleep(time.Until(told.Add(m.GetBusy().GetRetryAfter().AsDuration())))
	if err := busy.Send(report(3)); err != nil { // arriving after the pause
		t.Fatal(err)
	}
	// The resend starts at the refused seq: it lifts the gate. The
	// stream is handled in order, so its ack is the first answer: an ack
	// 3 here would mean report 3 was stored over the gap.
	if err := busy.Send(report(1, 2)); err != nil {
		t.Fatal(err)
	}
	m, err = recv(busy)
	if err != nil || m.GetAck().GetUpToSeq() != 2 {
		t.Fatalf("after the pause, on the same stream: %v, %v; want ack 2 (reports 2 and 3 dropped, 1 and 2 stored)", m, err)
	}
	if c, err := sq.Counts(context.Background(), id); err != nil || c.Total != 2 || c.MaxSeq != 2 {
		t.Fatalf("stored %+v, %v; want seqs 1 and 2 once", c, err)
	}
	if err := busy.Send(report(3)); err != nil {
		t.Fatal(err)
	}
	if m, err := recv(busy); err != nil || m.GetAck().GetUpToSeq() != 3 {
		t.Fatalf("report 3 sent again: %v, %v; want ack 3", m, err)
	}
	if c, err := sq.Counts(context.Background(), id); err != nil || c.Total != 3 || c.MaxSeq != 3 {
		t.Fatalf("stored %+v, %v; want seqs 1 to 3 once", c, err)
	}
}
