package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/server/admin"
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
	st, err := dir.open()
	if err != nil {
		return err
	}
	defer st.Close()
	svc := adminService(st)
	tok, rec, err := svc.CreateToken(context.Background(), actor, admin.TokenRequest{Role: *role, Label: *label, TTL: *expires})
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
	svc, actor, done, err := adminCLI(dir, *as, stderr)
	if err != nil {
		return err
	}
	defer done()
	err = svc.RevokeToken(context.Background(), actor, id)
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	fmt.Fprintf(stdout, "token %s revoked; its web sessions are ended\n", id)
	return err
}
