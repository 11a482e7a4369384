// Package server is evident-server's composition root: from a Config it
// opens the store, loads the CA and the TPM trust, and runs the gRPC
// ingest server, the web UI and the periodic rescore until its context
// ends, as agent.Run does for the agent. The CLI only parses flags into a
// Config and prints.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/evident-dev/evident/internal/atomicfile"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/internal/version"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
)

// Config is what a running server needs.
type Config struct {
	DataDir string
	// Listen is the gRPC address (port 0 picks one, written to
	// DATA_DIR/listen.addr).
	Listen string
	// SANs are extra names agents use to reach the server; localhost,
	// 127.0.0.1, ::1 and the hostname are always in the certificate.
	SANs   []string
	Policy *controls.Policy
	Log    *slog.Logger
	// RescoreEvery is how often every device is re-evaluated.
	RescoreEvery time.Duration
	// EKRoots and EKAllowlist are the TPM trust (defaults under DataDir).
	EKRoots, EKAllowlist  string
	AttestEvery, NonceTTL time.Duration
	// WebListen serves the web UI and API when set.
	WebListen string
	// MaxInFlight and QueueWait bound the reports being stored at once
	// and how long one may wait (ingest.Server; zero: the defaults).
	MaxInFlight int
	QueueWait   time.Duration
}

// DBPath is the store's file under a data directory.
func DBPath(dir string) string { return filepath.Join(dir, "evident.db") }

// OpenStore opens the store of a data directory: the one place that picks
// the backend (SQLite, embedded). A writable open creates and migrates it;
// a read-only open (reports next to a running server) never does.
func OpenStore(dir string, readOnly bool) (store.Store, error) {
	st, err := sqlite.Open(DBPath(dir), readOnly)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", DBPath(dir), err)
	}
	return st, nil
}

// Run serves until ctx ends or the gRPC server fails.
func Run(ctx context.Context, cfg Config) error {
	if cfg.RescoreEvery <= 0 || cfg.AttestEvery <= 0 || cfg.NonceTTL <= 0 {
		return errors.New("the rescore interval, the attestation interval and the nonce lifetime must be positive")
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	ca, err := pki.LoadOrCreateWithClock(filepath.Join(cfg.DataDir, "pki"), clock.Now)
	if err != nil {
		return err
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	hosts = append(hosts, cfg.SANs...)
	cert, err := ca.ServerCertificate(filepath.Join(cfg.DataDir, "pki"), hosts)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	st, err := OpenStore(cfg.DataDir, false)
	if err != nil {
		return err
	}
	defer st.Close()
	ekPolicy, rootsDir, err := loadEKPolicy(cfg.DataDir, cfg.EKRoots, cfg.EKAllowlist)
	if err != nil {
		return err
	}
	log.Info("TPM enrollment trust", "ek_roots_dir", rootsDir, "ek_allowlist_entries", len(ekPolicy.AllowedEKs))
	srv := &ingest.Server{Store: st, CA: ca, Policy: cfg.Policy, Log: log, Now: clock.Now, EKPolicy: ekPolicy, AttestEvery: cfg.AttestEvery, NonceTTL: cfg.NonceTTL,
		MaxInFlight: cfg.MaxInFlight, QueueWait: cfg.QueueWait}
	g := srv.GRPCServer(cert)
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(cfg.DataDir, "listen.addr"), []byte(lis.Addr().String()+"\n"), 0o644); err != nil {
		return err
	}
	if cfg.WebListen != "" {
		var webTLS *tls.Config
		if host, _, err := net.SplitHostPort(cfg.WebListen); err != nil {
			return fmt.Errorf("--web-listen %q: %w", cfg.WebListen, err)
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			webTLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		}
		stopWeb, url, err := startWeb(ctx, st, cfg.Policy, cfg.WebListen, log, webTLS)
		if err != nil {
			return fmt.Errorf("web UI: %w", err)
		}
		defer stopWeb()
		if err := atomicfile.WriteFile(filepath.Join(cfg.DataDir, "web.url"), []byte(url+"\n"), 0o644); err != nil {
			return err
		}
		log.Info("web UI listening", "url", url)
	}
	log.Info("evident-server listening", "addr", lis.Addr().String(), "version", version.Version,
		"data_dir", cfg.DataDir, "ca_sha256", ca.Fingerprint(), "names", strings.Join(hosts, ","), "controls", len(cfg.Policy.Controls))
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	var bg sync.WaitGroup
	defer bg.Wait() // before the store closes (deferred earlier, runs later)
	ctx, stop := context.WithCancel(ctx)
	defer stop() // runs before the Wait: ends the rescore loop however Run returns
	bg.Add(1)
	go func() {
		defer bg.Done()
		t := time.NewTicker(cfg.RescoreEvery)
		defer t.Stop()
		// A first rescore at start records what changed while the server
		// was down (silent devices, a changed policy) before the first tick.
		first := make(chan struct{}, 1)
		first <- struct{}{}
		for {
			select {
			case <-ctx.Done():
				return
			case <-first:
			case <-t.C:
			}
			now := clock.Now()
			if err := srv.Rescore(ctx, now); err != nil && ctx.Err() == nil {
				log.Error("rescoring failed", "err", err)
			}
			if err := st.PurgeExpired(ctx, now); err != nil && ctx.Err() == nil {
				log.Warn("purging expired nonces failed", "err", err)
			}
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: waiting for streams to finish")
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		// Agents hold their streams open; cut them. Anything not acked is
		// resent by the agents, and Stop waits for handlers to return.
		g.Stop()
	}
	log.Info("stopped")
	return nil
}

// loadEKPolicy loads the EK trust: the given paths, or DATA_DIR/ek-roots and
// DATA_DIR/ek-allowlist when they exist.
func loadEKPolicy(dir, roots, allow string) (*attest.EKPolicy, string, error) {
	if roots == "" {
		if fi, err := os.Stat(filepath.Join(dir, "ek-roots")); err == nil && fi.IsDir() {
			roots = filepath.Join(dir, "ek-roots")
		}
	}
	if allow == "" {
		if _, err := os.Stat(filepath.Join(dir, "ek-allowlist")); err == nil {
			allow = filepath.Join(dir, "ek-allowlist")
		}
	}
	p, err := attest.LoadEKPolicy(roots, allow)
	if err != nil {
		return nil, "", fmt.Errorf("TPM EK trust: %w", err)
	}
	return p, roots, nil
}

// startWeb serves the web UI and API on addr until stop is called or ctx
// ends. With tlsConf (it must hold the server certificate and must not
// require client certificates: browsers have none) it serves HTTPS and the
// session cookie is Secure; with nil it serves plain HTTP, allowed only on a
// loopback address (put a TLS-terminating proxy in front for anything
// else). url is the address actually listened on (port 0 picks one).
func startWeb(ctx context.Context, st store.Store, pol *controls.Policy, addr string, log *slog.Logger, tlsConf *tls.Config) (stop func(), url string, err error) {
	if tlsConf == nil {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, "", fmt.Errorf("web listen address %q: %w", addr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, "", fmt.Errorf("web listen address %q: plain HTTP is only served on loopback (127.0.0.1, ::1, localhost); serve it with TLS", addr)
		}
	}
	h, err := web.New(web.Config{Store: st, Policy: pol, Log: log, Now: clock.Now})
	if err != nil {
		return nil, "", err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	scheme := "http"
	var tc *tls.Config
	if tlsConf != nil {
		tc = tlsConf.Clone()
		tc.ClientAuth = tls.NoClientCert
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
		scheme = "https"
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	url = scheme + "://" + lis.Addr().String()
	go func() {
		serve := func() error { return srv.Serve(lis) }
		if tc != nil {
			// ServeTLS adds HTTP/2 to the certificate config's protocols.
			serve = func() error { return srv.ServeTLS(lis, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("web server stopped", "err", err)
		}
	}()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		})
	}
	log.Info("web UI listening", "url", url)
	return stop, url, nil
}
