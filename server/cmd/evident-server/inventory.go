package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/inventory"
)

const (
	inventoryImportUsage = "usage: evident-server inventory import [--source TEXT] [--as NAME] FILE"
	waiverRevokeUsage    = "usage: evident-server waiver revoke [--as NAME] WAIVER_ID"
	tokenCreateUsage     = "usage: evident-server token create --role auditor|admin [--label L] [--expires 720h] [--as NAME]"
	tokenRevokeUsage     = "usage: evident-server token revoke [--as NAME] TOKEN_ID"
)

func cmdInventoryImport(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("inventory import", stderr, "evident-server inventory import FILE: replace the device inventory the period report reconciles the\n"+
		"fleet against with a CSV exported from an MDM, HR system or identity provider. The header row names the\n"+
		"columns: serial (serial_number, \"Serial Number\"), hostname (host, device_name, computer_name) and owner\n"+
		"(user, email, assigned_user); other columns are ignored. Every row needs a serial number or a hostname.\n"+
		fmt.Sprintf("At most %d MiB and %d rows. The import is recorded with the file's SHA-256 and audited (inventory.import).", inventory.MaxBytes>>20, inventory.MaxRows))
	source := fs.String("source", "", "where the file comes from, shown in reports (e.g. \"Jamf export 2026-11\")")
	as := asFlag(fs)
	path, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if path == "" {
		fmt.Fprintln(stderr, inventoryImportUsage)
		return cli.ErrUsage
	}
	actor, err := cliActor(*as, stderr)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := openExisting(dir, false)
	if err != nil {
		return err
	}
	defer st.Close()
	svc := adminService(st)
	imp, inv, err := svc.ImportInventory(context.Background(), actor, admin.InventoryRequest{Source: *source, Filename: filepath.Base(path), CSV: f})
	if _, refused := errors.AsType[*admin.Refusal](err); refused {
		return fmt.Errorf("%s: %w", path, err)
	} else if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	for _, d := range inv.Duplicates {
		fmt.Fprintf(stderr, "warning: duplicate %s\n", d)
	}
	cols := []string{}
	for _, c := range []struct{ field, col string }{{"serial", inv.SerialColumn}, {"hostname", inv.HostnameColumn}, {"owner", inv.OwnerColumn}} {
		if c.col != "" {
			cols = append(cols, fmt.Sprintf("%s=%q", c.field, c.col))
		}
	}
	fmt.Fprintf(stdout, "imported %d devices from %s (sha256 %s; columns %s; %d blank rows skipped, %d duplicates); import %d replaces the previous inventory\n",
		imp.Rows, filepath.Base(path), inv.SHA256, strings.Join(cols, " "), inv.Blank, len(inv.Duplicates), imp.ID)
	return err
}

func cmdWaiverAdd(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("waiver add", stderr, "evident-server waiver add: grant an exception. While it is in force, a device's failing (or unknown)\n"+
		"control is reported as a waived exception, with the reason and the approver: still listed in every period\n"+
		"report, counted apart from compliant time. It expires (in the future, at most one year after it starts) and\n"+
		"can be revoked. Audited (waiver.add; a refused request as waiver.add.denied); the waiver records the actor.")
	device := fs.String("device", "", "the device id (required)")
	control := fs.String("control", "", "the control id, e.g. DC-ENC-01 (default: every control)")
	reason := fs.String("reason", "", "why the exception is accepted (required)")
	approver := fs.String("approver", "", "who approved it (required)")
	expiresS := fs.String("expires", "", "when it stops applying: a date (through the end of that day, UTC) or an RFC 3339 time (required)")
	startsS := fs.String("starts", "", "when it starts applying: a date (midnight UTC) or an RFC 3339 time (default: now)")
	as := asFlag(fs)
	createdBy := fs.String("created-by", "", "the same as --as (kept for existing scripts)")
	policyPath := fs.String("policy", "", "control pack JSON file --control is checked against (default: the built-in pack)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *as == "" {
		as = createdBy
	}
	svc, actor, done, err := adminCLI(dir, *as, stderr)
	if err != nil {
		return err
	}
	defer done()
	if c := strings.TrimSpace(*control); c != "" {
		policy, err := loadPolicy(*policyPath)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(policy.Controls, func(pc controls.Control) bool { return pc.ID == c }) {
			fmt.Fprintf(stderr, "warning: %s is not a control of the %s pack: the waiver waives nothing unless the server's pack has it\n", c, policy.Name)
		}
	}
	w, err := svc.AddWaiver(context.Background(), actor, admin.WaiverRequest{DeviceID: *device, ControlID: *control,
		Reason: *reason, Approver: *approver, Starts: *startsS, Expires: *expiresS})
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	what := w.ControlID
	if what == "" {
		what = "every control"
	}
	fmt.Fprintf(stdout, "waiver %s: device %s, %s, from %s until %s, approved by %s\n", w.ID, w.DeviceID, what,
		w.StartsAt.Format(time.RFC3339), w.ExpiresAt.Format(time.RFC3339), w.Approver)
	return err
}

func cmdWaiverList(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("waiver list", stderr, "evident-server waiver list: the waivers in force or yet to start (--all: every waiver, expired and\nrevoked ones included). Reads the database read-only.")
	all := fs.Bool("all", false, "include expired and revoked waivers")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	st, err := openExisting(dir, true)
	if err != nil {
		return err
	}
	defer st.Close()
	ws, err := st.ListWaivers(context.Background())
	if err != nil {
		return err
	}
	now := clock.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEVICE\tCONTROL\tSTARTS\tEXPIRES\tSTATE\tAPPROVER\tREASON")
	for _, w := range ws {
		state := "active"
		switch {
		case w.RevokedAt != nil:
			state = "revoked " + w.RevokedAt.Format(time.RFC3339)
		case !now.Before(w.ExpiresAt):
			state = "expired"
		case now.Before(w.StartsAt):
			state = "pending"
		}
		if !*all && (w.RevokedAt != nil || state == "expired") {
			continue
		}
		control := w.ControlID
		if control == "" {
			control = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w.ID, w.DeviceID, control, w.StartsAt.Format(time.RFC3339),
			w.ExpiresAt.Format(time.RFC3339), state, w.Approver, w.Reason)
	}
	return tw.Flush()
}

func cmdWaiverRevoke(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("waiver revoke", stderr, "evident-server waiver revoke WAIVER_ID: end a waiver now. It stays in the record and in reports\nfor the time it was in force. Audited (waiver.revoke).")
	as := asFlag(fs)
	id, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintln(stderr, waiverRevokeUsage)
		return cli.ErrUsage
	}
	svc, actor, done, err := adminCLI(dir, *as, stderr)
	if err != nil {
		return err
	}
	defer done()
	w, err := svc.RevokeWaiver(context.Background(), actor, id)
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	fmt.Fprintf(stdout, "waiver %s revoked at %s\n", id, w.RevokedAt.Format(time.RFC3339))
	return err
}
