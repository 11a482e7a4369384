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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/evident-dev/evident/internal/atomicfile"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/internal/every"
	"github.com/evident-dev/evident/internal/ops"
	"github.com/evident-dev/evident/internal/version"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/postgres"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
	"github.com/evident-dev/evident/server/webhook"
)

// Config is what a running server needs.
type Config struct {
	DataDir string
	// Store names the store (OpenStore): "" is SQLite under DataDir.
	Store string
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
	// WebCert and WebKey, when set, are the organisation's certificate
	// and key for the web UI (PEM files, picked up again when they
	// change); without them a non-loopback web listener serves the
	// server's own certificate, from Evident's private CA.
	WebCert, WebKey string
	// MaxInFlight and QueueWait bound the reports being stored at once
	// and how long one may wait (ingest.Server; zero: the defaults).
	MaxInFlight int
	QueueWait   time.Duration
	// BusyRetry is the pause an overloaded server asks of agents that
	// accept Busy (ingest.Server.BusyRetry).
	BusyRetry time.Duration
	// DebugListen serves runtime profiles on a loopback address when set.
	DebugListen string
	// QuotaObservations and QuotaBytes bound what one device may send in
	// an hour (zero: the ingest defaults).
	QuotaObservations, QuotaBytes int
	// HandshakesPerSource bounds the connections one source address may
	// have in their TLS handshake (zero: ingest.DefaultHalfOpenPerSource).
	HandshakesPerSource int
	// RetainRaw is how long observations' content and attestations' raw
	// messages are kept (store.Store.Prune); zero keeps them forever.
	RetainRaw time.Duration
	// MetricsListen serves Prometheus metrics (/metrics), /healthz and
	// /readyz on this address when set (port 0 picks one, written to
	// DATA_DIR/metrics.url).
	MetricsListen string
	// CredentialCheck is how often open streams are checked against
	// revocations and renewals (zero: ingest.DefaultCredentialCheck).
	CredentialCheck time.Duration
	// Webhooks, when it has an endpoint, turns alerting on: controls
	// turning fail or unknown and groups crossing their thresholds are
	// delivered to its endpoints (package webhook).
	Webhooks *webhook.Config
	// OIDC, when set, adds single sign-on to the web UI (web.OIDCConfig).
	OIDC *web.OIDCConfig
}

// DBPath is the SQLite store's file under a data directory.
func DBPath(dir string) string { return filepath.Join(dir, "evident.db") }

// OpenStore opens the store a spec names: the one place that picks the
// backend. "" is SQLite under the data directory (embedded, the default);
// sqlite:///PATH a SQLite file elsewhere; postgres://… (or postgresql://)
// a PostgreSQL database, which several server replicas can share. A
// writable open creates and migrates it; a read-only open (reports next to
// a running server) never does. Errors never show a password of the spec.
func OpenStore(spec, dir string, readOnly bool) (store.Store, error) {
	kind, path, err := ParseStoreSpec(spec, dir)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "postgres":
		st, err := postgres.Open(context.Background(), spec, readOnly)
		if err != nil {
			return nil, fmt.Errorf("open database %s: %s", redactURL(spec), redactErr(err, spec))
		}
		return st, nil
	default:
		st, err := sqlite.Open(path, readOnly)
		if err != nil {
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
		return st, nil
	}
}

// ParseStoreSpec says which backend a store spec names ("sqlite" or
// "postgres") and, for SQLite, the file.
func ParseStoreSpec(spec, dir string) (kind, path string, err error) {
	switch {
	case spec == "":
		return "sqlite", DBPath(dir), nil
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		if _, err := url.Parse(spec); err != nil {
			return "", "", fmt.Errorf("store %s: not a URL", redactURL(spec))
		}
		return "postgres", "", nil
	case strings.HasPrefix(spec, "sqlite://"):
		u, err := url.Parse(spec)
		if err != nil || u.Host != "" || u.Path == "" || u.RawQuery != "" {
			return "", "", fmt.Errorf("store %q: want sqlite:///PATH (an absolute path, three slashes)", spec)
		}
		return "sqlite", filepath.FromSlash(u.Path), nil
	default:
		return "", "", fmt.Errorf("store %s: want sqlite:///PATH or postgres://USER@HOST:PORT/DB", redactURL(spec))
	}
}

// redactURL hides a URL's password; anything unparsable is hidden whole.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable store URL)"
	}
	return u.Redacted()
}

// redactErr is err's text with the spec's password taken out, should the
// driver quote it.
func redactErr(err error, spec string) string {
	msg := err.Error()
	if u, perr := url.Parse(spec); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
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
	authority, err := pki.NewAuthority(filepath.Join(cfg.DataDir, "pki"), clock.Now)
	if err != nil {
		return err
	}
	authority.Log = log
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	hosts = append(hosts, cfg.SANs...)
	certs, err := pki.NewServerCertSource(authority.Current, filepath.Join(cfg.DataDir, "pki"), hosts)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	cert, err := certs.Get()
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	var alerts *webhook.Dispatcher
	var whc webhook.Config
	if wh := cfg.Webhooks; wh != nil && len(wh.Endpoints) > 0 {
		whc = *wh
		if whc.Log == nil {
			whc.Log = log.With("component", "webhook")
		}
		if whc.Titles == nil {
			whc.Titles = map[string]string{}
			for _, ctl := range cfg.Policy.Controls {
				whc.Titles[ctl.ID] = ctl.Title
			}
		}
		if err := whc.Validate(); err != nil {
			return err
		}
	}
	st, err := OpenStore(cfg.Store, cfg.DataDir, false)
	if err != nil {
		return err
	}
	if len(whc.Endpoints) > 0 {
		// On before the first evaluation, so no transition goes untold.
		st.EnableAlerts()
		alerts = webhook.New(st, whc)
		log.Info("alerting on", "webhooks", len(whc.Endpoints), "thresholds", len(whc.Thresholds))
	}
	defer st.Close()
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// The files in it are made private, but names and sizes show.
		log.Warn("the data directory can be read by other users; make it private (chmod 700)", "dir", cfg.DataDir, "mode", fi.Mode().Perm().String())
	}
	ekPolicy, rootsDir, err := loadEKPolicy(cfg.DataDir, cfg.EKRoots, cfg.EKAllowlist)
	if err != nil {
		return err
	}
	log.Info("TPM enrollment trust", "ek_roots_dir", rootsDir, "ek_allowlist_entries", len(ekPolicy.AllowedEKs))
	ca := authority.Current()
	srv := &ingest.Server{Store: st, CA: ca, Authority: authority, Policy: cfg.Policy, Log: log, Now: clock.Now, EKPolicy: ekPolicy, AttestEvery: cfg.AttestEvery, NonceTTL: cfg.NonceTTL,
		MaxInFlight: cfg.MaxInFlight, QueueWait: cfg.QueueWait, BusyRetry: cfg.BusyRetry, ServerCert: certs.Get,
		QuotaObservations: cfg.QuotaObservations, QuotaBytes: cfg.QuotaBytes}
	g := srv.GRPCServer(*cert)
	// No TCP keepalive on agents' connections: Go's default probes every
	// idle connection every 15 s (at 50,000 agents, thousands of packets a
	// second to and from laptops that could sleep), where gRPC's own
	// keepalive (ingest.GRPCServer) already finds the dead ones.
	lis, err := (&net.ListenConfig{KeepAlive: -1}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(cfg.DataDir, "listen.addr"), []byte(lis.Addr().String()+"\n"), 0o644); err != nil {
		return err
	}
	if (cfg.WebCert == "") != (cfg.WebKey == "") {
		return errors.New("--web-cert and --web-key go together")
	}
	if cfg.WebListen != "" {
		var webTLS *tls.Config
		if host, _, err := net.SplitHostPort(cfg.WebListen); err != nil {
			return fmt.Errorf("--web-listen %q: %w", cfg.WebListen, err)
		} else if cfg.WebCert != "" {
			files, err := loadCertFiles(cfg.WebCert, cfg.WebKey, log)
			if err != nil {
				return err
			}
			webTLS = &tls.Config{GetCertificate: files.Get}
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			// Renewed without a restart (see ingest.Server.ServerCert).
			webTLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return certs.Get() }}
		}
		stopWeb, url, err := startWeb(ctx, st, cfg.Policy, cfg.WebListen, log, webTLS, cfg.OIDC)
		if err != nil {
			return fmt.Errorf("web UI: %w", err)
		}
		defer stopWeb()
		if err := atomicfile.WriteFile(filepath.Join(cfg.DataDir, "web.url"), []byte(url+"\n"), 0o644); err != nil {
			return err
		}
		log.Info("web UI listening", "url", url)
	}
	if cfg.MetricsListen != "" {
		lis, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		reg := ops.NewRegistry("evident-server", version.Version)
		reg.MustRegister(srv.Collectors()...)
		reg.MustRegister(newCertExpiries(st))
		stopOps := ops.Serve(context.WithoutCancel(ctx), lis, reg, st.Ping, log)
		defer stopOps()
		url := "http://" + lis.Addr().String()
		if err := atomicfile.WriteFile(filepath.Join(cfg.DataDir, "metrics.url"), []byte(url+"\n"), 0o644); err != nil {
			return err
		}
		log.Info("metrics, health and readiness served", "url", url+"/metrics")
	}
	if cfg.DebugListen != "" {
		stopDebug, err := startDebug(context.WithoutCancel(ctx), cfg.DebugListen, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	log.Info("evident-server listening", "addr", lis.Addr().String(), "version", version.Version,
		"data_dir", cfg.DataDir, "ca_sha256", ca.Fingerprint(), "names", strings.Join(hosts, ","), "controls", len(cfg.Policy.Controls))
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(srv.LimitListener(lis, cfg.HandshakesPerSource)) }()
	var bg sync.WaitGroup
	defer bg.Wait() // before the store closes (deferred earlier, runs later)
	ctx, stop := context.WithCancel(ctx)
	defer stop() // runs before the Wait: ends the rescore loop however Run returns
	bg.Add(1)
	go func() {
		defer bg.Done()
		foldCounts(ctx, st, log)
	}()
	if m, ok := st.(store.Maintainer); ok && m.Maintains() {
		bg.Add(1)
		go func() {
			defer bg.Done()
			maintainStore(ctx, m, st, leaseHolder(cfg.DataDir), log)
		}()
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		srv.WatchCredentials(ctx, cfg.CredentialCheck)
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		srv.WatchCommands(ctx, 0)
	}()
	if alerts != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			alerts.Run(ctx, leaseHolder(cfg.DataDir))
		}()
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		t := time.NewTicker(cfg.RescoreEvery)
		defer t.Stop()
		// A first rescore at start records what changed while the server
		// was down (silent devices, a changed policy) before the first tick.
		first := make(chan struct{}, 1)
		first <- struct{}{}
		holder := leaseHolder(cfg.DataDir)
		held, rescoredAll := false, false
		var lastPrune time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-first:
			case <-t.C:
			}
			now := clock.Now()
			// Replicas sharing the store take turns: the holder of the
			// rescore lease does the periodic work and renews the lease
			// each round; when it stops, another replica takes over once
			// the lease lapses (two intervals).
			ok, err := st.TakeLease(ctx, "rescore", holder, now, now.Add(2*cfg.RescoreEvery))
			if err != nil {
				if ctx.Err() == nil {
					log.Error("taking the rescore lease failed", "err", err)
				}
				continue
			}
			if ok != held {
				held = ok
				log.Info("rescore lease", "held", ok, "holder", holder)
			}
			if !ok {
				continue
			}
			// The first round evaluates every device (the policy may have
			// changed while the server was down); later rounds only those
			// whose evidence or grace period has run out since.
			// (A device that failed stays due: its rescore time is unchanged.)
			if !rescoredAll {
				if err := srv.Rescore(ctx, now); err != nil && ctx.Err() == nil {
					log.Error("rescoring failed", "err", err)
				}
				rescoredAll = ctx.Err() == nil
			} else if n, err := srv.RescoreDue(ctx, now); err != nil && ctx.Err() == nil {
				log.Error("rescoring failed", "err", err, "devices", n)
			} else if n > 0 {
				log.Debug("rescored", "devices", n)
			}
			if err := st.PurgeExpired(ctx, now); err != nil && ctx.Err() == nil {
				log.Warn("purging expired nonces failed", "err", err)
			}
			if cfg.RetainRaw > 0 && now.Sub(lastPrune) >= pruneEvery {
				res, err := st.Prune(ctx, now.Add(-cfg.RetainRaw), now)
				switch {
				case err != nil && ctx.Err() == nil:
					log.Warn("applying the retention rule failed; retrying at the next round", "err", err)
				case err == nil:
					lastPrune = now
					log.Info("retention applied", "older_than", now.Add(-cfg.RetainRaw).Format(time.RFC3339),
						"observations_pruned", res.Observations, "attestations_pruned", res.Attestations, "alerts_deleted", res.Alerts)
				}
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

// pruneEvery is how often the holder of the rescore lease applies the
// retention rule.
const pruneEvery = 24 * time.Hour

// DefaultRetainRaw keeps raw evidence 400 days: a 12-month Type II period
// and the weeks of audit fieldwork after it can cite every observation.
const DefaultRetainRaw = 400 * 24 * time.Hour

// foldEvery is how often each replica folds the read model's aggregate
// changes into its counts (store.Store.FoldCounts).
const foldEvery = time.Second

// foldCounts folds the aggregate changes every foldEvery until ctx ends.
// Every replica folds: the store folds each change once, and a fleet's
// changes are folded even while the rescore lease's holder is down.
func foldCounts(ctx context.Context, st store.Store, log *slog.Logger) {
	// A failure is logged once per outage: the reads stay exact, only slower.
	every.Run(ctx, foldEvery, log, "folding the fleet counts", func(ctx context.Context) error {
		_, err := st.FoldCounts(ctx)
		return err
	})
}

// maintainEvery is how often the holder of the maintenance lease
// refreshes the database's statistics and, where the database does not,
// vacuums (store.Maintainer).
const maintainEvery = 15 * time.Second

// maintainStore runs the store's maintenance every maintainEvery until ctx
// ends, on one replica at a time (the "maintain" lease).
func maintainStore(ctx context.Context, m store.Maintainer, l store.Leases, holder string, log *slog.Logger) {
	warned := false
	every.Run(ctx, maintainEvery, log, "maintaining the database", func(ctx context.Context) error {
		now := clock.Now()
		ok, err := l.TakeLease(ctx, "maintain", holder, now, now.Add(4*maintainEvery))
		if err != nil || !ok {
			return err
		}
		done, err := m.Maintain(ctx)
		if len(done.Vacuumed) > 0 && !warned {
			warned = true
			log.Warn("the database does not vacuum these tables (PostgreSQL's autovacuum is off): evident-server vacuums them itself; turn autovacuum on to leave it to the database",
				"tables", strings.Join(done.Vacuumed, ","))
		}
		if len(done.Analyzed)+len(done.Vacuumed) > 0 {
			log.Debug("database maintained", "analyzed", strings.Join(done.Analyzed, ","), "vacuumed", strings.Join(done.Vacuumed, ","))
		}
		return err
	})
}

// leaseHolder names this replica among those sharing a store: its host and
// data directory (each replica has its own, for its certificate and
// listen address). It is stable across restarts, so a restarted replica
// renews its own lease at once instead of waiting for it to lapse.
func leaseHolder(dir string) string {
	h, _ := os.Hostname()
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return h + ":" + dir
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
func startWeb(ctx context.Context, st store.Store, pol *controls.Policy, addr string, log *slog.Logger, tlsConf *tls.Config, sso *web.OIDCConfig) (stop func(), url string, err error) {
	if tlsConf == nil {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, "", fmt.Errorf("web listen address %q: %w", addr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, "", fmt.Errorf("web listen address %q: plain HTTP is only served on loopback (127.0.0.1, ::1, localhost); serve it with TLS", addr)
		}
	}
	h, err := web.New(web.Config{Store: st, Policy: pol, Log: log, Now: clock.Now, OIDC: sso})
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
