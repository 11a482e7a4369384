package outbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

const (
	// minReclaim is the least reclaimable space worth rewriting the file for.
	minReclaim = 1 << 20
	// compactTxBytes bounds each transaction bbolt.Compact commits into the
	// new file, so compacting a full outbox does not hold it all in memory.
	compactTxBytes = 8 << 20
)

func (o *Outbox) compactPath() string { return o.path + ".compact" }

// Compact rewrites the file without its free pages when that would reclaim at
// least half of it (and at least 1 MiB); otherwise it does nothing. bbolt
// reuses freed pages but never shrinks its file, so after a long offline period
// (a full outbox, then everything acked) the file stays at its high-water mark
// until compacted. It is safe to call at any time: it waits for in-flight
// operations and blocks new ones until done.
//
// The copy is written to path+".compact", fsynced by bbolt's commits, closed,
// and renamed over path (with the directory fsynced) before the file is
// reopened. A crash before the rename leaves the original intact (the stale
// copy is removed by the next Open); after it, the copy is complete. Between
// closing and reopening, the file lock is briefly released; if the reopen
// fails the Outbox is closed and the error returned.
func (o *Outbox) Compact() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.db == nil {
		return ErrClosed
	}
	if worth, err := o.worthCompacting(); err != nil || !worth {
		return err
	}

	tmp := o.compactPath()
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("outbox: compact: %w", err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: o.opts.Timeout, NoSync: o.opts.NoSync})
	if err != nil {
		return fmt.Errorf("outbox: compact: %w", err)
	}
	if err := bolt.Compact(dst, o.db, compactTxBytes); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("outbox: compact: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("outbox: compact: %w", err)
	}

	// Windows cannot rename over an open file, so close the original first.
	closeErr := o.db.Close()
	o.db = nil
	var renameErr error
	if closeErr == nil {
		if renameErr = os.Rename(tmp, o.path); renameErr == nil {
			renameErr = syncDir(filepath.Dir(o.path))
		}
	}
	// Reopen whichever file is now at path: the compacted one or, if the
	// rename failed, the original.
	db, err := o.openDB()
	if err != nil {
		return fmt.Errorf("outbox: reopen after compact: %w", errors.Join(closeErr, renameErr, err))
	}
	o.db = db
	if closeErr != nil || renameErr != nil {
		os.Remove(tmp)
		return fmt.Errorf("outbox: compact: %w", errors.Join(closeErr, renameErr))
	}
	return nil
}

// worthCompacting estimates the space a rewrite would give back: the file
// minus the pages in use (the high-water mark less the free pages). bbolt grows
// its file by doubling, so a freshly compacted file is up to twice its data;
// requiring more than half the file to be reclaimable keeps Compact from
// rewriting a file it just compacted.
func (o *Outbox) worthCompacting() (bool, error) {
	fi, err := os.Stat(o.path)
	if err != nil {
		return false, fmt.Errorf("outbox: compact: %w", err)
	}
	var highWater int64
	if err := o.db.View(func(tx *bolt.Tx) error {
		highWater = tx.Size()
		return nil
	}); err != nil {
		return false, err
	}
	st := o.db.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(o.db.Info().PageSize)
	reclaim := fi.Size() - (highWater - free)
	return reclaim >= minReclaim && 2*reclaim > fi.Size(), nil
}
