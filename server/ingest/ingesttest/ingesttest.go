// Package ingesttest runs a real ingest server for tests: a CA and a
// server certificate for 127.0.0.1 in a temporary directory, and gRPC over
// loopback mTLS, stopped when the test ends.
package ingesttest

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/pki"
)

// Server is a running ingest server.
type Server struct {
	*ingest.Server
	// Addr is its loopback address.
	Addr string
}

// Start serves srv. Unset, its CA is created (with srv.Now as the CA's
// clock), its policy is the built-in one and its log discarded. The
// server certificate is issued at start.
func Start(t testing.TB, srv *ingest.Server) *Server {
	t.Helper()
	dir := t.TempDir()
	now := srv.Now
	if now == nil {
		now = time.Now
	}
	if srv.CA == nil {
		ca, err := pki.LoadOrCreateWithClock(filepath.Join(dir, "pki"), now)
		if err != nil {
			t.Fatal(err)
		}
		srv.CA = ca
	}
	if srv.Policy == nil {
		srv.Policy = controls.Default()
	}
	if srv.Log == nil {
		srv.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cert, err := srv.CA.ServerCertificate(filepath.Join(dir, "pki"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	g := srv.GRPCServer(cert)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return &Server{Server: srv, Addr: lis.Addr().String()}
}
