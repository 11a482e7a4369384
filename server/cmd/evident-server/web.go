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
	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
)

// cmdTokenCreate makes a web/API role token and prints it once; only its
// hash is stored.
func cmdTokenCreate(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("token create", stderr, "evident-server token create --role auditor|admin: make a token for the web UI\n(paste it into the login page) and the read-only API (Authorization: Bearer TOKEN).\nOnly its hash is stored: the token is shown once. Audited (token.create).")
	role := fs.String("role", "", "auditor (read-only, exports) or admin (also admin actions such as allowing a TPM change)")
	label := fs.String("label", "", "who or what the token is for (shown in the audit log), e.g. \"acme-audit-2026\"")
	expires := fs.Duration("expires", web.DefaultTokenTTL, "the token stops working after this long (0 = never)")
	as := asFlag(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *role == "" {
		fmt.Fprintln(stderr, tokenCreateUsage)
		return cli.ErrUsage
	}
	actor, err := cliActor(*as, stderr)
	if err != nil {
		return err
	}
	st, err := sqlite.Open(dbPath(*dir), false)
	if err != nil {
		return fmt.Errorf("open database %s: %w", dbPath(*dir), err)
	}
	defer st.Close()
	tok, rec, err := adminService(st).CreateToken(context.Background(), actor, admin.TokenRequest{Role: *role, Label: *label, TTL: *expires})
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	fmt.Fprintln(stdout, tok)
	exp := "never expires"
	if rec.ExpiresAt != nil {
		exp = "expires " + rec.ExpiresAt.Format(time.RFC3339)
	}
	fmt.Fprintf(stderr, "created %s token %s (%s); the token above is shown once\n", rec.Role, rec.ID, exp)
	return err
}

// cmdTokenRevoke revokes a web/API role token and ends its sessions.
func cmdTokenRevoke(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("token revoke", stderr, "evident-server token revoke TOKEN_ID: revoke a web/API token (the tok_... id `token create`\nprinted) at once: it no longer logs in or calls the API, and its web sessions end. Audited (token.revoke).")
	as := asFlag(fs)
	id, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintln(stderr, tokenRevokeUsage)
		return cli.ErrUsage
	}
	actor, err := cliActor(*as, stderr)
	if err != nil {
		return err
	}
	st, err := openExisting(*dir, false)
	if err != nil {
		return err
	}
	defer st.Close()
	err = adminService(st).RevokeToken(context.Background(), actor, id)
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	fmt.Fprintf(stdout, "token %s revoked; its web sessions are ended\n", id)
	return err
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
