package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/internal/enrolltoken"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/ingest/ingesttest"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestIngestQuota: a device over its hourly allowance gets its report
// refused with a retryable status and nothing stored past the allowance;
// the refusal is audited once; the allowance refills with time.
func TestIngestQuota(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	now := time.Now()
	clk := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := ingesttest.Start(t, &ingest.Server{Store: st, Now: clk, QuotaObservations: 50})
	secret := enrolltoken.NewSecret()
	if err := st.CreateEnrollSecret(context.Background(), store.EnrollSecret{ID: "sec_q", Hash: enrolltoken.HashSecret(secret), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	id, err := identity.Enroll(context.Background(), filepath.Join(t.TempDir(), "identity"), srv.Addr,
		enrolltoken.Token{Secret: secret, CAPin: srv.CA.Fingerprint()}.String(), &identity.HostFacts{Hostname: "chatty"}, identity.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := id.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	send := func(stream evidentv1.Evidence_StreamClient) error {
		rep := &evidentv1.Report{}
		for range 10 {
			seq++
			rep.Observations = append(rep.Observations, &evidentv1.Observation{Seq: seq, Collector: "osinfo", CollectedAt: timestamppb.Now(),
				Status: evidentv1.Observation_STATUS_OK, PayloadJson: []byte(`{}`)})
		}
		if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: rep}}); err != nil {
			return err
		}
		m, err := recvAnswer(stream)
		if err == nil && m.GetAck().GetUpToSeq() != seq {
			t.Fatalf("answer %v, want an ack of %d", m, seq)
		}
		return err
	}
	stream, err := openStream(t, srv.Addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := send(stream); err != nil {
			t.Fatalf("report %d within the quota: %v", i+1, err)
		}
	}
	if err := send(stream); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "over its ingest quota") {
		t.Fatalf("the report past the quota: %v, want ResourceExhausted", err)
	}
	if c, _ := st.Counts(context.Background(), id.DeviceID); c.Total != 50 {
		t.Errorf("%d observations stored, want the 50 of the quota", c.Total)
	}
	log, err := st.AuditLog(context.Background(), 10)
	if err != nil || len(log) != 1 || log[0].Action != "device.over-quota" || !strings.Contains(log[0].Detail, id.DeviceID) {
		t.Errorf("audit = %+v, %v; want one device.over-quota entry", log, err)
	}
	// Half an hour later half the allowance is back: the report resent goes in.
	mu.Lock()
	now = now.Add(30 * time.Minute)
	mu.Unlock()
	seq -= 10
	stream, err = openStream(t, srv.Addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(stream); err != nil {
		t.Fatalf("after the allowance refilled: %v", err)
	}
}
