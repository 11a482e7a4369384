package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/server/bundle"
	"github.com/evident-dev/evident/server/pki"
)

// maxAttach bounds a file attached to a bundle with --attach.
const maxAttach = 64 << 20

func cmdExportBundle(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("export bundle", stderr, "evident-server export bundle --out FILE: write a signed evidence bundle (a tar file: manifest,\n"+
		"observations with their hash chains, control intervals, the signing key) that `evident-server verify`\n"+
		"checks offline. Reads the database read-only, so it is safe while the server runs.")
	out := fs.String("out", "", "bundle file to write (required)")
	fromS := fs.String("from", "", "period start, RFC 3339 (default: the beginning)")
	toS := fs.String("to", "", "period end, RFC 3339, exclusive (default: now)")
	device := fs.String("device", "", "only this device id")
	policyPath := fs.String("policy", "", "control pack JSON file the intervals were scored with (default: the built-in pack); its name goes in the manifest")
	var attach []string
	fs.Func("attach", "file to include as extra/NAME, e.g. a period report (repeatable)", func(s string) error {
		attach = append(attach, s)
		return nil
	})
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "--out is required")
		return cli.ErrUsage
	}
	opts := bundle.Options{Now: clock.Now().UTC(), Extra: map[string][]byte{}}
	for _, f := range []struct {
		name, val string
		dst       *time.Time
	}{{"from", *fromS, &opts.From}, {"to", *toS, &opts.To}} {
		if f.val == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.val)
		if err != nil {
			return fmt.Errorf("--%s: %w", f.name, err)
		}
		*f.dst = t
	}
	if *device != "" {
		opts.Devices = []string{*device}
	}
	policy, err := loadPolicy(*policyPath)
	if err != nil {
		return err
	}
	opts.Policy = policy.Name
	for _, p := range attach {
		b, err := readBounded(p, maxAttach)
		if err != nil {
			return fmt.Errorf("--attach: %w", err)
		}
		opts.Extra[filepath.Base(p)] = b
	}
	st, err := openExisting(dir, true)
	if err != nil {
		return err
	}
	defer st.Close()
	pkiDir := filepath.Join(dir.dir, "pki")
	ca, err := pki.LoadOrCreateWithClock(pkiDir, clock.Now)
	if err != nil {
		return err
	}
	key, cert, err := ca.EvidenceSigner(pkiDir)
	if err != nil {
		return fmt.Errorf("evidence signing key: %w", err)
	}
	opts.Certificates = []*x509.Certificate{cert, ca.Cert}

	// Written beside the target and renamed: a failed export leaves no
	// half bundle under the requested name.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".evident-bundle-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	opts.TempDir = filepath.Dir(*out)
	m, err := bundle.Write(context.Background(), tmp, st, key, opts)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export bundle: %w", err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	n := 0
	for _, d := range m.Devices {
		n += d.Observations
	}
	fmt.Fprintf(stdout, "wrote %s: %d devices, %d observations, period %s to %s, signed by key sha256:%s (CA sha256:%s)\n",
		*out, len(m.Devices), n, m.Period.From.Format(time.RFC3339), m.Period.To.Format(time.RFC3339), m.Server.SigningKeySHA256, m.Server.CAFingerprint)
	return nil
}

func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("verify", stderr, "evident-server verify [--pubkey FILE] [--ca-fingerprint SHA256] BUNDLE: check an evidence bundle\n"+
		"offline: the manifest signature, every file's SHA-256 and every device's hash chain. Exits 0 with a\n"+
		"summary when intact, 1 naming the first thing altered. Pin the server's key or CA (the fingerprint in\n"+
		"enrollment tokens) to prove who signed it: without a pin anyone can make a bundle that is intact and\n"+
		"self-consistent, so verify then says the signer is NOT pinned and exits 1, unless --allow-unpinned.\n"+
		"--data-dir is not used.")
	pubPath := fs.String("pubkey", "", "PEM public key (\"PUBLIC KEY\") the bundle must be signed with, e.g. pubkey.pem from an earlier trusted bundle")
	caPin := fs.String("ca-fingerprint", "", "hex SHA-256 of the server CA certificate that must have issued the signing certificate")
	unpinned := fs.Bool("allow-unpinned", false, "exit 0 for an intact bundle whose signer is not pinned (it proves integrity only, not who signed)")
	// The path may come before or after the flags.
	path, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if path == "" {
		fmt.Fprintln(stderr, "usage: evident-server verify [--pubkey FILE] [--ca-fingerprint SHA256] BUNDLE")
		return cli.ErrUsage
	}
	opts := bundle.VerifyOptions{CAFingerprint: strings.TrimPrefix(strings.ToLower(*caPin), "sha256:")}
	if *pubPath != "" {
		b, err := readBounded(*pubPath, bundle.MaxSmallFile)
		if err != nil {
			return fmt.Errorf("--pubkey: %w", err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "PUBLIC KEY" {
			return fmt.Errorf("--pubkey %s: not a PEM public key", *pubPath)
		}
		if opts.PublicKey, err = x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
			return fmt.Errorf("--pubkey %s: %w", *pubPath, err)
		}
	}
	res, err := bundle.VerifyFile(path, opts)
	if err != nil {
		return fmt.Errorf("bundle %s rejected: %w", path, err)
	}
	fmt.Fprint(stdout, res.Summary())
	if opts.PublicKey == nil && opts.CAFingerprint == "" {
		fmt.Fprintln(stdout, "signature valid, signer NOT pinned: this proves the bundle is intact, not who made it (pin it with --ca-fingerprint or --pubkey)")
		if !*unpinned {
			return errors.New("the signer is not pinned: pass --ca-fingerprint (the server CA's SHA-256, as in enrollment tokens) or --pubkey, or --allow-unpinned to accept an integrity check alone")
		}
	}
	return nil
}

// readBounded reads a whole file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, errors.New(path + ": file too large")
	}
	return b, nil
}
