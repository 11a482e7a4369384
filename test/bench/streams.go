//go:build linux

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/agent/uplink"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// benchIdleStreams measures what a connected, idle agent costs the real
// server process: n devices (enrolled straight into the store, each with
// its own key and certificate, and a TPM as most laptops have) each open
// an mTLS stream with the agent's connection settings, say hello, send one
// report of a real collection cycle, wait for its ack and stay connected.
// The figures are the server's RSS growth per stream, read from /proc,
// once every stream is idle, and what it is made of: live heap, goroutine
// stacks and goroutines per stream, read from its runtime after a forced
// collection.
func benchIdleStreams(dir, bin string, cycle [][]byte, n int, idle time.Duration) {
	srvDir := filepath.Join(dir, "streams")
	args := []string{"--log-level", "error", "--rescore-interval", "1h"}
	debugAddr := serverDebug
	if debugAddr == "" {
		debugAddr = freeLoopbackAddr()
		args = append(args, "--debug-listen", debugAddr)
	}
	srv, addr := startServer(bin, srvDir, args...)
	defer func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() }()
	ca, err := pki.LoadOrCreate(filepath.Join(srvDir, "pki"))
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	certs := enrollStraight(srvDir, ca, n, true)
	obs := decode(cycle)
	pid := srv.Process.Pid
	time.Sleep(2 * time.Second)
	before := procRSSKiB(pid)
	rtBefore, rtErr := serverRuntime(debugAddr)
	t0 := time.Now()
	var mu sync.Mutex
	var conns []*grpc.ClientConn
	var streams []grpc.BidiStreamingClient[evidentv1.AgentMessage, evidentv1.ServerMessage]
	errs := 0
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range certs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			conn, stream, err := idleStream(ctx, addr, ca, certs[i], obs)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			conns, streams = append(conns, conn), append(streams, stream)
		}()
	}
	wg.Wait()
	connected := time.Since(t0)
	afterConnect := procRSSKiB(pid)
	// Idle long enough for the Go runtime's forced GC (every 2 min, even
	// with nothing allocated), which shrinks the stacks grown by the TLS
	// handshakes and frees their garbage: the steady state of a fleet.
	time.Sleep(idle)
	after := procRSSKiB(pid)
	fmt.Printf("Idle agent streams (the real server process, mTLS and the agent's connection settings, TPM-bound devices challenged on connect, one report of %d observations each, then idle; %d streams opened in %s, %d errors)\n", len(obs),
		len(streams), connected.Round(time.Millisecond), errs)
	per := func(kib int) float64 { return float64(kib-before) / float64(max(1, len(streams))) }
	fmt.Printf("  server RSS %.1f MiB before; just connected %.1f MiB (%.1f KiB per stream); idle %s %.1f MiB (%.1f KiB per stream)\n",
		float64(before)/1024, float64(afterConnect)/1024, per(afterConnect), idle, float64(after)/1024, per(after))
	// What the RSS is made of, after a forced collection: the live heap
	// and the goroutine stacks per stream (the rest of the RSS is garbage
	// the collector lets accumulate, up to GOGC, and the runtime's own).
	rtAfter, err := serverRuntime(debugAddr)
	if rtErr == nil {
		rtErr = err
	}
	if rtErr != nil {
		fmt.Printf("  runtime figures: %v\n\n", rtErr)
	} else {
		n := float64(max(1, len(streams)))
		fmt.Printf("  after a forced GC: live heap %.1f KiB per stream, goroutine stacks %.1f KiB per stream, %.2f goroutines per stream\n\n",
			float64(rtAfter.heapLive-rtBefore.heapLive)/1024/n, float64(rtAfter.stacks-rtBefore.stacks)/1024/n,
			float64(rtAfter.goroutines-rtBefore.goroutines)/n)
	}
	for _, c := range conns {
		c.Close()
	}
}

// idleStream connects one device as the agent does, says hello, sends one
// report of obs (seqs from 1), waits for its ack and leaves the stream
// open. It returns the last seq sent.
func idleStream(ctx context.Context, addr string, ca *pki.CA, cert tls.Certificate, obs []*evidentv1.Observation) (*grpc.ClientConn, grpc.BidiStreamingClient[evidentv1.AgentMessage, evidentv1.ServerMessage], error) {
	conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}
	conn, err := grpc.NewClient(addr, append(uplink.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))...)
	if err != nil {
		return nil, nil, err
	}
	stream, err := evidentv1.NewEvidenceClient(conn).Stream(ctx)
	if err == nil {
		err = stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Hello{Hello: &evidentv1.Hello{AgentVersion: "bench"}}})
	}
	if err == nil {
		err = stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: report(obs, 1)}})
	}
	if err == nil {
		err = recvAck(stream)
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, stream, nil
}

// benchReportCPU measures the real server process's CPU per report of one
// real collection cycle (8 observations): devices streams each send
// reports one at a time (waiting for each ack, as an agent's cycle does)
// while the server's CPU time is read from /proc. The client's TLS and
// protobuf work is in this process, not counted.
func benchReportCPU(dir, bin string, cycle [][]byte, devices, reports int) {
	srvDir := filepath.Join(dir, "reports")
	srv, addr := startServer(bin, srvDir, "--log-level", "error", "--rescore-interval", "1h")
	defer func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() }()
	ca, err := pki.LoadOrCreate(filepath.Join(srvDir, "pki"))
	if err != nil {
		fail(err)
	}
	certs := enrollStraight(srvDir, ca, devices, false)
	obs := decode(cycle)
	ctx := context.Background()
	type dev struct {
		conn   *grpc.ClientConn
		stream grpc.BidiStreamingClient[evidentv1.AgentMessage, evidentv1.ServerMessage]
	}
	devs := make([]dev, devices)
	for i := range devs {
		conn, stream, err := idleStream(ctx, addr, ca, certs[i], obs)
		if err != nil {
			fail(err)
		}
		devs[i] = dev{conn, stream}
		defer conn.Close()
	}
	pid := srv.Process.Pid
	cpu0, t0 := procCPU(pid), time.Now()
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := uint64(len(obs)) // idleStream sent the first report
			for range reports {
				err := d.stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: report(obs, seq+1)}})
				seq += uint64(len(obs))
				if err == nil {
					err = recvAck(d.stream)
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		fail(failed)
	}
	wall, cpu := time.Since(t0), procCPU(pid)-cpu0
	total := devices * reports
	fmt.Printf("Server CPU per report (the real server process; %d devices × %d reports of %d observations, each sent after the previous ack)\n",
		devices, reports, len(obs))
	fmt.Printf("  %.2f ms of server CPU per report (%s over %s wall; %.0f reports/s)\n\n",
		float64(cpu)/float64(time.Millisecond)/float64(total), cpu, wall.Round(time.Millisecond), float64(total)/wall.Seconds())
}

// report is obs as one report with seqs from first on, collected now.
func report(obs []*evidentv1.Observation, first uint64) *evidentv1.Report {
	r := &evidentv1.Report{Observations: make([]*evidentv1.Observation, len(obs))}
	for i, o := range obs {
		o = proto.Clone(o).(*evidentv1.Observation)
		o.Seq, o.CollectedAt = first+uint64(i), timestamppb.Now()
		r.Observations[i] = o
	}
	return r
}

// enrollStraight enrolls n devices straight into a server's store (not
// through the Enroll RPC), with a TPM record when tpm is set, and signs a
// certificate for each with its CA.
func enrollStraight(srvDir string, ca *pki.CA, n int, tpm bool) []tls.Certificate {
	st, err := sqlite.Open(filepath.Join(srvDir, "evident.db"), false)
	if err != nil {
		fail(err)
	}
	defer st.Close()
	certs := make([]tls.Certificate, n)
	for i := range certs {
		d := store.Device{ID: pki.NewDeviceID(), Hostname: fmt.Sprintf("bench-%05d", i), GOOS: "linux", EnrolledAt: time.Now()}
		if tpm {
			// The server challenges a TPM-bound device for a quote on
			// every connect and then every attest interval (the bench
			// devices do not answer: no quote is verified).
			ek := make([]byte, 32)
			_, _ = rand.Read(ek)
			d.TPM = &store.DeviceTPM{EKHash: ek, EKTrust: "allowlist", AKPublic: []byte("bench"), EnrolledAt: d.EnrolledAt}
		}
		d, err := st.EnrollDevice(context.Background(), d)
		if err != nil {
			fail(err)
		}
		certs[i] = deviceCert(ca, d.ID)
	}
	return certs
}

// deviceCert makes a device key and has the CA sign its certificate, as
// enrollment does.
func deviceCert(ca *pki.CA, id string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		fail(err)
	}
	der, err := ca.SignDevice(csr, id)
	if err != nil {
		fail(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// recvAck reads the stream's messages up to the next ack (the server sends a
// Config after Hello).
func recvAck(stream grpc.BidiStreamingClient[evidentv1.AgentMessage, evidentv1.ServerMessage]) error {
	for {
		m, err := stream.Recv()
		if err != nil || m.GetAck() != nil {
			return err
		}
	}
}
