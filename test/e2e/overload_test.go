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
	srv := ingesttest.Start(t, &ingest.Server{Store: st, MaxInFlight: 1, QueueWait: time.Millisecond})
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
		d, err := st.EnrollDevice(ctx, store.Device{ID: pki.NewDeviceID(), Hostname: fmt.Sprintf("busy-%d", i), GOOS: "linux", EnrolledAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		der, err := ca.SignDevice(csr, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
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
	refused := 0
	for _, a := range all {
		if st := a.up.State(); st.Reconnects > 0 && strings.Contains(st.LastError, "overloaded") {
			refused++
		}
	}
	if refused == 0 {
		t.Error("no agent was refused as overloaded: the test did not overload the server")
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
	t.Logf("%d of %d agents were refused as overloaded at least once and retried", refused, agents)
}
