package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/inventory"
	"github.com/evident-dev/evident/server/store"
)

const (
	inventoryImportUsage = "usage: evident-server inventory import [--source TEXT] FILE"
	waiverAddUsage       = "usage: evident-server waiver add --device ID [--control ID] --reason TEXT --approver NAME --expires DATE [--starts DATE]"
	waiverRevokeUsage    = "usage: evident-server waiver revoke WAIVER_ID"
)

func cmdInventoryImport(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("inventory import", stderr, "evident-server inventory import FILE: replace the device inventory the period report reconciles the\n"+
		"fleet against with a CSV exported from an MDM, HR system or identity provider. The header row names the\n"+
		"columns: serial (serial_number, \"Serial Number\"), hostname (host, device_name, computer_name) and owner\n"+
		"(user, email, assigned_user); other columns are ignored. Every row needs a serial number or a hostname.\n"+
		fmt.Sprintf("At most %d MiB and %d rows. The import is recorded with the file's SHA-256.", inventory.MaxBytes>>20, inventory.MaxRows))
	source := fs.String("source", "", "where the file comes from, shown in reports (e.g. \"Jamf export 2026-11\")")
	path, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if path == "" {
		fmt.Fprintln(stderr, inventoryImportUsage)
		return cli.ErrUsage
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	inv, err := inventory.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	st, err := openExisting(*dir, false)
	if err != nil {
		return err
	}
	defer st.Close()
	imp, err := st.ReplaceInventory(context.Background(), store.InventoryImport{ImportedAt: clock.Now().UTC(), Source: *source,
		Filename: filepath.Base(path), SHA256: inv.SHA256}, inv.Rows)
	if err != nil {
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
	return nil
}

// parseWaiverTime reads a waiver bound: an RFC 3339 time, or a date, which
// is midnight UTC starting that day, or with endOfDay the midnight ending
// it (--expires 2026-12-31 covers the 31st).
func parseWaiverTime(flag, s string, endOfDay bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		if endOfDay {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want a date (2026-12-31) or an RFC 3339 time (2026-12-31T18:00:00Z)", flag, s)
}

func newWaiverID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "wvr_" + hex.EncodeToString(b)
}

func cmdWaiverAdd(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("waiver add", stderr, "evident-server waiver add: grant an exception. While it is in force, a device's failing (or unknown)\n"+
		"control is reported as a waived exception, with the reason and the approver: still listed in every period\n"+
		"report, counted apart from compliant time. It expires (at most one year after it starts) and can be revoked.")
	device := fs.String("device", "", "the device id (required)")
	control := fs.String("control", "", "the control id, e.g. DC-ENC-01 (default: every control)")
	reason := fs.String("reason", "", "why the exception is accepted (required)")
	approver := fs.String("approver", "", "who approved it (required)")
	expiresS := fs.String("expires", "", "when it stops applying: a date (through the end of that day, UTC) or an RFC 3339 time (required)")
	startsS := fs.String("starts", "", "when it starts applying: a date (midnight UTC) or an RFC 3339 time (default: now)")
	createdBy := fs.String("created-by", os.Getenv("USER"), "who recorded it")
	policyPath := fs.String("policy", "", "control pack JSON file --control is checked against (default: the built-in pack)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *device == "" || strings.TrimSpace(*reason) == "" || strings.TrimSpace(*approver) == "" || *expiresS == "" {
		fmt.Fprintln(stderr, "waiver add needs --device, --reason, --approver and --expires")
		fmt.Fprintln(stderr, waiverAddUsage)
		return cli.ErrUsage
	}
	now := clock.Now().UTC()
	w := store.Waiver{ID: newWaiverID(), DeviceID: *device, ControlID: strings.TrimSpace(*control), Reason: strings.TrimSpace(*reason),
		Approver: strings.TrimSpace(*approver), CreatedBy: *createdBy, CreatedAt: now, StartsAt: now}
	var err error
	if *startsS != "" {
		if w.StartsAt, err = parseWaiverTime("starts", *startsS, false); err != nil {
			return err
		}
	}
	if w.ExpiresAt, err = parseWaiverTime("expires", *expiresS, true); err != nil {
		return err
	}
	if err := w.Validate(); err != nil {
		return err
	}
	st, err := openExisting(*dir, false)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Device(ctx, w.DeviceID); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no device %q (see `evident-server report`)", w.DeviceID)
	} else if err != nil {
		return err
	}
	if w.ControlID != "" {
		policy, err := loadPolicy(*policyPath)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(policy.Controls, func(c controls.Control) bool { return c.ID == w.ControlID }) {
			fmt.Fprintf(stderr, "warning: %s is not a control of the %s pack: the waiver waives nothing unless the server's pack has it\n", w.ControlID, policy.Name)
		}
	}
	if err := st.CreateWaiver(ctx, w); err != nil {
		return err
	}
	what := w.ControlID
	if what == "" {
		what = "every control"
	}
	fmt.Fprintf(stdout, "waiver %s: device %s, %s, from %s until %s, approved by %s\n", w.ID, w.DeviceID, what,
		w.StartsAt.Format(time.RFC3339), w.ExpiresAt.Format(time.RFC3339), w.Approver)
	return nil
}

func cmdWaiverList(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("waiver list", stderr, "evident-server waiver list: the waivers in force or yet to start (--all: every waiver, expired and\nrevoked ones included). Reads the database read-only.")
	all := fs.Bool("all", false, "include expired and revoked waivers")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	st, err := openExisting(*dir, true)
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
	fs, dir := newFlags("waiver revoke", stderr, "evident-server waiver revoke WAIVER_ID: end a waiver now. It stays in the record and in reports\nfor the time it was in force.")
	id, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintln(stderr, waiverRevokeUsage)
		return cli.ErrUsage
	}
	st, err := openExisting(*dir, false)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.RevokeWaiver(ctx, id, clock.Now().UTC()); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no waiver %q (see `evident-server waiver list --all`)", id)
	} else if err != nil {
		return err
	}
	w, err := st.Waiver(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "waiver %s revoked at %s\n", id, w.RevokedAt.Format(time.RFC3339))
	return nil
}
