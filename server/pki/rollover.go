package pki

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/evident-dev/evident/internal/atomicfile"
)

// A CA rollover replaces the CA without cutting a device off:
//
//  1. `evident-server ca rotate --overlap D` creates the next CA
//     (ca-next.crt, ca-next.key) and records when it takes over
//     (rollover.json). From then on the trust bundle holds both CAs: the
//     server pushes it to every connected agent and to each agent that
//     connects, and device certificates of either are accepted.
//  2. At the takeover the server makes the next CA the issuing one (the old
//     one becomes ca-prev.crt): its own certificate and every device
//     certificate issued from then on come from the new CA. The old one is
//     still trusted for the device certificates it issued.
//  3. A device certificate lifetime (and a day) later, when every
//     certificate the old CA issued has expired, it is dropped.
//
// An agent that was offline for the whole overlap no longer recognises the
// server after the takeover and must be enrolled again, as must devices
// given an enrollment token made before the takeover (it pins the old CA).
const (
	nextCertFile = "ca-next.crt"
	nextKeyFile  = "ca-next.key"
	prevCertFile = "ca-prev.crt"
	prevKeyFile  = "ca-prev.key"
	rolloverFile = "rollover.json"
)

// Rollover is the state of a CA rollover.
type Rollover struct {
	// ActivateAt is when the next CA takes over (zero once it has).
	ActivateAt time.Time `json:"activate_at,omitzero"`
	// RetireAt is when the previous CA stops being trusted (zero before
	// the takeover).
	RetireAt time.Time `json:"retire_at,omitzero"`
}

// due reports whether the rollover's next step is due at now.
func (r Rollover) due(now time.Time) bool {
	return !r.ActivateAt.IsZero() && !now.Before(r.ActivateAt) || !r.RetireAt.IsZero() && !now.Before(r.RetireAt)
}

// InProgress reports whether a rollover is under way.
func (r Rollover) InProgress() bool { return !r.ActivateAt.IsZero() || !r.RetireAt.IsZero() }

func readRollover(dir string) (Rollover, error) {
	var r Rollover
	b, err := os.ReadFile(filepath.Join(dir, rolloverFile))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", filepath.Join(dir, rolloverFile), err)
	}
	return r, nil
}

func writeRollover(dir string, r Rollover) error {
	if !r.InProgress() {
		err := os.Remove(filepath.Join(dir, rolloverFile))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	return atomicfile.WriteFile(filepath.Join(dir, rolloverFile), append(b, '\n'), 0o644)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parsePEMCerts(b)
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("%s: want one PEM certificate", path)
	}
	return certs[0], nil
}

// loadRollover loads the rollover's other CA, when one is in progress.
func (ca *CA) loadRollover(dir string) error {
	r, err := readRollover(dir)
	if err != nil {
		return err
	}
	ca.Rollover = r
	for _, f := range []struct {
		on   bool
		file string
	}{{!r.ActivateAt.IsZero(), nextCertFile}, {!r.RetireAt.IsZero(), prevCertFile}} {
		if !f.on {
			continue
		}
		c, err := readCert(filepath.Join(dir, f.file))
		if err != nil {
			return fmt.Errorf("CA rollover: %w", err)
		}
		ca.others = append(ca.others, c)
	}
	return nil
}

// Rotate starts a rollover: it creates the next CA, trusted from now on
// beside the current one, which takes over at now + overlap. It refuses
// while a rollover is in progress.
func Rotate(dir string, now time.Time, overlap time.Duration) (*x509.Certificate, Rollover, error) {
	r, err := readRollover(dir)
	if err != nil {
		return nil, r, err
	}
	switch {
	case !r.ActivateAt.IsZero():
		return nil, r, fmt.Errorf("a CA rollover is already staged: the next CA takes over at %s", r.ActivateAt.UTC().Format(time.RFC3339))
	case !r.RetireAt.IsZero():
		return nil, r, fmt.Errorf("the previous CA rollover ends at %s (when the old CA's last device certificate has expired); rotate again after that", r.RetireAt.UTC().Format(time.RFC3339))
	case overlap <= 0:
		return nil, r, errors.New("the overlap must be positive: agents need it to receive the new CA")
	}
	if _, err := os.Stat(filepath.Join(dir, caCertFile)); err != nil {
		return nil, r, fmt.Errorf("no CA to rotate in %s: %w", dir, err)
	}
	if err := createCA(filepath.Join(dir, nextCertFile), filepath.Join(dir, nextKeyFile), now); err != nil {
		return nil, r, err
	}
	r = Rollover{ActivateAt: now.Add(overlap).UTC()}
	if err := writeRollover(dir, r); err != nil {
		return nil, r, err
	}
	c, err := readCert(filepath.Join(dir, nextCertFile))
	return c, r, err
}

// Advance takes the rollover's next step when its time has come at now:
// the takeover by the next CA, then the retirement of the previous one.
// It reports whether it changed anything. Only the server calls it (each
// replica on its own copy of the pki directory).
func Advance(dir string, now time.Time, deviceTTL time.Duration) (bool, error) {
	r, err := readRollover(dir)
	if err != nil || !r.InProgress() {
		return false, err
	}
	path := func(f string) string { return filepath.Join(dir, f) }
	switch {
	case !r.ActivateAt.IsZero() && !now.Before(r.ActivateAt):
		// Each rename is skipped when an interrupted takeover already did
		// it, so running this again after a crash at any point finishes
		// the takeover instead of renaming the new CA over the old one.
		for _, mv := range [][2]string{{caCertFile, prevCertFile}, {caKeyFile, prevKeyFile}, {nextCertFile, caCertFile}, {nextKeyFile, caKeyFile}} {
			_, srcErr := os.Stat(path(mv[0]))
			_, dstErr := os.Stat(path(mv[1]))
			done := mv[0] == caCertFile || mv[0] == caKeyFile
			if done && dstErr == nil || !done && errors.Is(srcErr, os.ErrNotExist) {
				continue
			}
			if err := os.Rename(path(mv[0]), path(mv[1])); err != nil {
				return true, fmt.Errorf("CA rollover: %w", err)
			}
			if err := atomicfile.SyncDir(dir); err != nil {
				return true, err
			}
		}
		// The old CA issued its last device certificate just now.
		return true, writeRollover(dir, Rollover{RetireAt: r.ActivateAt.Add(deviceTTL + 24*time.Hour).UTC()})
	case !r.RetireAt.IsZero() && !now.Before(r.RetireAt):
		for _, f := range []string{prevCertFile, prevKeyFile} {
			if err := os.Remove(path(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return true, err
			}
		}
		return true, writeRollover(dir, Rollover{})
	}
	return false, nil
}

// reloadEvery is how often an Authority re-reads its directory.
const reloadEvery = 5 * time.Second

// Authority is the server's CA as it changes: it re-reads the pki
// directory at most every reloadEvery (a rollover staged by `ca rotate`
// from another process) and takes the rollover's steps when their time
// comes.
type Authority struct {
	dir string
	now func() time.Time
	// Log receives reload failures (nil: none).
	Log *slog.Logger

	mu      sync.Mutex
	ca      *CA
	checked time.Time
	failed  time.Time
}

// NewAuthority loads (creating on first start) the CA of dir.
func NewAuthority(dir string, now func() time.Time) (*Authority, error) {
	a := &Authority{dir: dir, now: now}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Authority) reload() error {
	if _, err := Advance(a.dir, a.now(), DefaultDeviceCertTTL); err != nil {
		return err
	}
	ca, err := LoadOrCreateWithClock(a.dir, a.now)
	if err != nil {
		return err
	}
	a.ca, a.checked = ca, time.Now()
	return nil
}

// Current returns the CA now: it reloads when reloadEvery has passed, or
// when the rollover's next step is due. A failed reload keeps the last one,
// is logged, and is retried after reloadEvery.
func (a *Authority) Current() *CA {
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Since(a.checked) >= reloadEvery || (a.ca.Rollover.due(a.now()) && time.Since(a.failed) >= reloadEvery) {
		if err := a.reload(); err != nil {
			a.checked, a.failed = time.Now(), time.Now()
			if a.Log != nil {
				a.Log.Error("reloading the CA failed; keeping the one loaded", "dir", a.dir, "err", err)
			}
		}
	}
	return a.ca
}

// parsePEMCerts parses the CERTIFICATE blocks of b.
func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out, nil
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
