//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	_ "modernc.org/sqlite"

	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

const batch = 100

// decode turns outbox entries back into protobuf observations.
func decode(cycle [][]byte) []*evidentv1.Observation {
	out := make([]*evidentv1.Observation, len(cycle))
	for i, b := range cycle {
		out[i] = &evidentv1.Observation{}
		if err := proto.Unmarshal(b, out[i]); err != nil {
			fail(err)
		}
	}
	return out
}

func storeObs(o *evidentv1.Observation, seq uint64) store.Observation {
	src, _ := json.Marshal(o.GetSources())
	return store.Observation{Seq: seq, Collector: o.GetCollector(), CollectedAt: o.GetCollectedAt().AsTime(),
		Status: "ok", Payload: o.GetPayloadJson(), Sources: src}
}

// benchSQLite ingests n batches of 100 real observations through the store
// (idempotent insert, last-seen update, one transaction per batch) and the
// same rows with plain INSERTs, the raw limit.
func benchSQLite(dir string, cycle [][]byte, n int) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(err)
	}
	obs := decode(cycle)
	st, err := sqlite.Open(filepath.Join(dir, "evident.db"), false)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	if _, err := st.EnrollDevice(ctx, store.Device{ID: pki.NewDeviceID(), EnrolledAt: time.Now()}); err != nil {
		fail(err)
	}
	devs, _ := st.Devices(ctx)
	dev := devs[0].ID
	seq := uint64(0)
	mk := func() []store.Observation {
		b := make([]store.Observation, batch)
		for i := range b {
			seq++
			b[i] = storeObs(obs[i%len(obs)], seq)
		}
		return b
	}
	t0 := time.Now()
	for range n {
		if _, err := st.Ingest(ctx, dev, mk(), time.Now()); err != nil {
			fail(err)
		}
	}
	storeDur := time.Since(t0)
	st.Close()

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "raw.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		fail(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE o (device_id TEXT, seq INTEGER, collector TEXT, collected_at INTEGER, received_at INTEGER,
		status TEXT, payload BLOB, sources BLOB, PRIMARY KEY (device_id, seq)) WITHOUT ROWID`); err != nil {
		fail(err)
	}
	seq = 0
	t0 = time.Now()
	for range n {
		tx, err := db.Begin()
		if err != nil {
			fail(err)
		}
		stmt, _ := tx.Prepare(`INSERT INTO o VALUES (?,?,?,?,?,?,?,?)`)
		for _, o := range mk() {
			if _, err := stmt.Exec(dev, int64(o.Seq), o.Collector, o.CollectedAt.UnixNano(), time.Now().UnixNano(), o.Status, []byte(o.Payload), []byte(o.Sources)); err != nil {
				fail(err)
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			fail(err)
		}
	}
	rawDur := time.Since(t0)
	db.Close()
	total := float64(n * batch)
	s, r := total/storeDur.Seconds(), total/rawDur.Seconds()
	fmt.Println("Server store (SQLite, WAL, synchronous=FULL, one transaction per batch of 100)")
	fmt.Printf("  store.Ingest     %9.0f observations/s\n", s)
	fmt.Printf("  raw INSERT       %9.0f observations/s  (same rows, same durability)\n", r)
	fmt.Printf("  ratio store/raw  %s\n\n", ratio(s, r))
}

type ackOnly struct {
	evidentv1.UnimplementedEvidenceServer
}

func (ackOnly) Stream(s grpc.BidiStreamingServer[evidentv1.AgentMessage, evidentv1.ServerMessage]) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if r := m.GetReport(); r != nil {
			obs := r.GetObservations()
			if err := s.Send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_Ack{Ack: &evidentv1.Ack{UpToSeq: obs[len(obs)-1].GetSeq()}}}); err != nil {
				return err
			}
		}
	}
}

// benchGRPC streams n reports of 100 observations over loopback mTLS to the
// real ingest server (store + scoring), and to a server that only acks, the
// transport's raw limit.
func benchGRPC(ctx context.Context, dir string, cycle [][]byte, n int) {
	obs := decode(cycle)
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"))
	if err != nil {
		fail(err)
	}
	cert, err := ca.ServerCertificate(filepath.Join(dir, "pki"), []string{"127.0.0.1"})
	if err != nil {
		fail(err)
	}
	st, err := sqlite.Open(filepath.Join(dir, "evident.db"), false)
	if err != nil {
		fail(err)
	}
	defer st.Close()
	dev, err := st.EnrollDevice(ctx, store.Device{ID: pki.NewDeviceID(), EnrolledAt: time.Now()})
	if err != nil {
		fail(err)
	}
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{deviceCert(ca, dev.ID)}}

	srv := &ingest.Server{Store: st, CA: ca, Policy: controls.Default(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	real := srv.GRPCServer(cert)
	raw := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert},
		ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})))
	evidentv1.RegisterEvidenceServer(raw, ackOnly{})

	realRate := streamRate(ctx, real, clientTLS, obs, n)
	rawRate := streamRate(ctx, raw, clientTLS, obs, n)
	fmt.Println("End-to-end ingest over gRPC/mTLS loopback (reports of 100, window of 4 in flight, as the agent sends)")
	fmt.Printf("  evident-server (validate, store, score) %9.0f observations/s\n", realRate)
	fmt.Printf("  ack-only gRPC server (transport limit)  %9.0f observations/s\n", rawRate)
	fmt.Printf("  ratio server/transport %s\n", ratio(realRate, rawRate))
}

func streamRate(ctx context.Context, g *grpc.Server, clientTLS *tls.Config, obs []*evidentv1.Observation, n int) float64 {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	stream, err := evidentv1.NewEvidenceClient(conn).Stream(ctx)
	if err != nil {
		fail(err)
	}
	reports := make([]*evidentv1.AgentMessage, n)
	seq := uint64(0)
	now := timestamppb.Now()
	for i := range reports {
		r := &evidentv1.Report{}
		for j := range batch {
			o := proto.Clone(obs[j%len(obs)]).(*evidentv1.Observation)
			seq++
			o.Seq, o.CollectedAt = seq, now
			r.Observations = append(r.Observations, o)
		}
		reports[i] = &evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: r}}
	}
	t0 := time.Now()
	const window = 4
	acked := 0
	for i, r := range reports {
		if i >= window {
			if _, err := stream.Recv(); err != nil {
				fail(err)
			}
			acked++
		}
		if err := stream.Send(r); err != nil {
			fail(err)
		}
	}
	for acked < n {
		if _, err := stream.Recv(); err != nil {
			fail(err)
		}
		acked++
	}
	return float64(n*batch) / time.Since(t0).Seconds()
}
