package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
)

// cmdTokenCreate makes a web/API role token and prints it once; only its
// hash is stored.
func cmdTokenCreate(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("token create", stderr, "evident-server token create --role auditor|admin: make a token for the web UI\n(paste it into the login page) and the read-only API (Authorization: Bearer TOKEN).\nOnly its hash is stored: the token is shown once.")
	role := fs.String("role", "", "auditor (read-only, exports) or admin (also admin actions such as allowing a TPM change)")
	label := fs.String("label", "", "who or what the token is for (shown in the audit log), e.g. \"acme-audit-2026\"")
	expires := fs.Duration("expires", web.DefaultTokenTTL, "the token stops working after this long (0 = never)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *role != store.RoleAuditor && *role != store.RoleAdmin {
		fmt.Fprintln(stderr, "usage: evident-server token create --role auditor|admin [--label L] [--expires 720h]")
		return cli.ErrUsage
	}
	if *expires < 0 {
		return errors.New("--expires must not be negative")
	}
	if len(*label) > 200 {
		return errors.New("--label must be at most 200 characters")
	}
	st, err := sqlite.Open(dbPath(*dir), false)
	if err != nil {
		return fmt.Errorf("open database %s: %w", dbPath(*dir), err)
	}
	defer st.Close()
	now := clock.Now().UTC()
	tok, id, hash := web.NewToken()
	rec := store.Token{ID: id, Hash: hash, Role: *role, Label: *label, CreatedAt: now}
	if *expires > 0 {
		t := now.Add(*expires)
		rec.ExpiresAt = &t
	}
	ctx := context.Background()
	if err := st.CreateToken(ctx, rec); err != nil {
		return err
	}
	if _, err := st.AddAudit(ctx, store.AuditEntry{Time: now, Actor: "cli", Action: "token.create",
		Detail: fmt.Sprintf("id=%s role=%s label=%q", id, *role, *label)}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	exp := "never expires"
	if rec.ExpiresAt != nil {
		exp = "expires " + rec.ExpiresAt.Format(time.RFC3339)
	}
	fmt.Fprintf(stderr, "created %s token %s (%s); the token above is shown once\n", *role, id, exp)
	return nil
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
