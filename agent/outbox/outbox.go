// Package outbox is the agent's durable evidence queue: a bbolt file holding
// observations, keyed by a per-device sequence number, from the moment they are
// collected until the server acknowledges them.
//
// Append stores a collection cycle in one fsynced transaction and returns the
// sequence numbers it assigned; Pending reads entries after a sequence number to
// send; Ack deletes everything up to a sequence number (the server acks
// cumulatively). The stored bytes are bounded (Options.MaxBytes): when an Append
// would exceed the bound, the oldest entries are dropped in the same transaction
// and the loss is recorded as a gap entry, so it is reported as evidence rather
// than lost silently.
//
// Layout of the file (all buckets are declared in one place, below):
//
//	outbox  big-endian uint64 seq -> entry bytes (observations and gap records)
//	gaps    big-endian uint64 seq -> JSON Gap, for each gap record still in outbox
//	meta    counters (next_seq, last_acked, dropped, bytes, count, last_gap)
//	        plus caller keys written with SetMeta
//
// Sequence numbers come from the outbox bucket's own sequence (NextSequence), so
// they start at 1, never repeat and survive Compact.
package outbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultMaxBytes = 64 << 20
	DefaultTimeout  = 2 * time.Second
)

// Buckets and the meta keys the outbox maintains itself. SetMeta refuses the
// latter so a caller cannot corrupt the counters.
var (
	bucketOutbox = []byte("outbox")
	bucketGaps   = []byte("gaps")
	bucketMeta   = []byte("meta")

	keyNextSeq   = []byte("next_seq")   // mirror of the outbox bucket sequence + 1, for readers of meta alone
	keyLastAcked = []byte("last_acked") // highest seq acknowledged
	keyDropped   = []byte("dropped")    // observations dropped to stay under MaxBytes, ever
	keyBytes     = []byte("bytes")      // sum of len(value) over the outbox bucket
	keyCount     = []byte("count")      // number of keys in the outbox bucket
	keyLastGap   = []byte("last_gap")   // JSON of the most recent Gap

	reservedMeta = [][]byte{keyNextSeq, keyLastAcked, keyDropped, keyBytes, keyCount, keyLastGap}
)

// Errors callers may test for with errors.Is.
var (
	ErrLocked   = errors.New("outbox is locked by another process")
	ErrTooLarge = errors.New("outbox: entry too large")
	ErrBadAck   = errors.New("outbox: ack beyond the last issued seq")
	ErrClosed   = errors.New("outbox: closed")
)

// Options configures Open. The zero value is usable.
type Options struct {
	// MaxBytes bounds the stored entry bytes (the sum of the entries' lengths,
	// not the file size). Default 64 MiB. A single item may be at most MaxBytes/4.
	MaxBytes int64
	// Timeout is how long Open waits for the file lock. Default 2s.
	Timeout time.Duration
	// Gap encodes the evidence record appended when entries are dropped to stay
	// under MaxBytes. If nil, drops are recorded only in meta (Stats.Dropped and
	// the "last_gap" meta key).
	Gap func(Gap) []byte
	// NoSync skips fsync. For tests and benchmarks only: it gives up durability.
	NoSync bool
	// Now stamps Gap.At. Default time.Now; tests replace it.
	Now func() time.Time
}

// Gap describes the observations dropped by one Append to stay under MaxBytes.
// Count observations (Bytes of data) were dropped, all with seqs in
// FirstSeq..LastSeq; the other seqs in that span are earlier gap records, which
// are kept (see makeRoom), so every issued seq is either delivered, still
// stored, or inside some gap's span, and the spans of gap records do not
// overlap. The exception, documented at makeRoom, is an outbox holding nothing
// but gap records: the oldest are then folded into the new gap, which adds
// their counts and widens its span over theirs.
type Gap struct {
	FirstSeq, LastSeq uint64
	Count             int
	Bytes             int64
	At                time.Time
}

// Entry is one stored item.
type Entry struct {
	Seq  uint64
	Data []byte
}

// Stats is a snapshot of the outbox.
type Stats struct {
	Depth     int    // entries stored (observations and gap records)
	Bytes     int64  // sum of the stored entries' lengths
	NextSeq   uint64 // seq the next stored entry will get
	LastAcked uint64
	Dropped   uint64 // observations dropped to stay under MaxBytes, ever
	FileBytes int64  // size of the bbolt file on disk
}

// Outbox is a durable queue backed by one bbolt file. It is safe for concurrent
// use: bbolt serialises write transactions, and mu only guards the db handle,
// which Compact and Close replace.
type Outbox struct {
	path    string
	opts    Options
	maxItem int64

	mu sync.RWMutex
	db *bolt.DB // nil once closed
}

// counters is the outbox's bookkeeping in meta, read and written inside the
// same transaction as the entries it describes, so it can never drift.
type counters struct {
	lastAcked, dropped, count uint64
	bytes                     int64
}

// Open opens (creating if needed) the outbox file at path, with mode 0600 and
// its parent directory created 0700. If another process holds the file open it
// fails after opts.Timeout with an error matching ErrLocked.
func Open(path string, opts Options) (*Outbox, error) {
	if opts.MaxBytes < 0 || opts.Timeout < 0 {
		return nil, fmt.Errorf("outbox: negative MaxBytes or Timeout")
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &Outbox{path: path, opts: opts, maxItem: opts.MaxBytes / 4}
	db, err := o.openDB()
	if err != nil {
		return nil, err
	}
	o.db = db
	// We hold the lock now, so a leftover from a Compact interrupted before its
	// rename is ours to delete.
	if err := os.Remove(o.compactPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		db.Close()
		return nil, fmt.Errorf("outbox: removing stale compaction file: %w", err)
	}
	return o, nil
}

// openDB opens the bbolt file and makes sure the buckets exist.
//
// bbolt's Options.MaxSize is deliberately not set: the bound that matters is
// MaxBytes, enforced on live data by dropping oldest entries, and the file is
// kept near it by page reuse and Compact. A MaxSize hit would make Append fail,
// turning a disk-usage concern into lost evidence.
func (o *Outbox) openDB() (*bolt.DB, error) {
	db, err := bolt.Open(o.path, 0o600, &bolt.Options{Timeout: o.opts.Timeout, NoSync: o.opts.NoSync})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &lockedError{path: o.path}
	}
	if err != nil {
		return nil, fmt.Errorf("outbox: open %s: %w", o.path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketOutbox, bucketGaps, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox: init %s: %w", o.path, err)
	}
	return db, nil
}

type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("outbox %s is locked by another process (is the agent running? use `evident-agent status`)", e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// Close closes the file. Further calls return ErrClosed.
func (o *Outbox) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.db == nil {
		return ErrClosed
	}
	err := o.db.Close()
	o.db = nil
	return err
}

// update and view run fn on the current db under the read lock (which only
// excludes Compact and Close; bbolt does its own transaction locking).
func (o *Outbox) update(fn func(*bolt.Tx) error) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.db == nil {
		return ErrClosed
	}
	return o.db.Update(fn)
}

func (o *Outbox) view(fn func(*bolt.Tx) error) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.db == nil {
		return ErrClosed
	}
	return o.db.View(fn)
}

// Append stores data as consecutive entries in one transaction, fsynced before
// it returns, and returns the first and last seq assigned to them. With no data
// it does nothing and returns 0, 0.
//
// Items larger than MaxBytes/4, or a batch larger than MaxBytes, are refused
// (ErrTooLarge) and nothing is stored. If storing the batch would exceed
// MaxBytes, the oldest entries are dropped in the same transaction and a gap
// record (Options.Gap) is stored with seq last+1: after the batch, so the
// caller's items always occupy the contiguous range first..last, and a reader
// sees the loss reported with the batch that caused it. The gap record counts
// toward MaxBytes like any entry but is dropped only after every observation
// (see Gap). Without Options.Gap the loss is recorded in meta only.
func (o *Outbox) Append(data ...[]byte) (first, last uint64, err error) {
	if len(data) == 0 {
		return 0, 0, nil
	}
	var batch int64
	for i, d := range data {
		if int64(len(d)) > o.maxItem {
			return 0, 0, fmt.Errorf("%w: item %d is %d bytes, limit is %d (MaxBytes/4)", ErrTooLarge, i, len(d), o.maxItem)
		}
		batch += int64(len(d))
	}
	if batch > o.opts.MaxBytes {
		return 0, 0, fmt.Errorf("%w: batch of %d items is %d bytes, limit is %d (MaxBytes)", ErrTooLarge, len(data), batch, o.opts.MaxBytes)
	}
	err = o.update(func(tx *bolt.Tx) error {
		q, gaps, meta := tx.Bucket(bucketOutbox), tx.Bucket(bucketGaps), tx.Bucket(bucketMeta)
		c := readCounters(meta)

		// Make room. The gap record's size depends on what was dropped, so
		// re-encode after each round until batch + gap record fit.
		gap := Gap{At: o.opts.Now()}
		var rec []byte
		for c.bytes > o.opts.MaxBytes-batch-int64(len(rec)) {
			if err := makeRoom(q, gaps, &c, &gap, o.opts.MaxBytes-batch-int64(len(rec))); err != nil {
				return err
			}
			if o.opts.Gap != nil {
				rec = o.opts.Gap(gap)
			}
		}

		for i, d := range data {
			seq, err := put(q, &c, d)
			if err != nil {
				return err
			}
			if i == 0 {
				first = seq
			}
			last = seq
		}

		if gap.LastSeq != 0 {
			js, err := json.Marshal(gap)
			if err != nil {
				return err
			}
			if err := meta.Put(keyLastGap, js); err != nil {
				return err
			}
			if o.opts.Gap != nil {
				seq, err := put(q, &c, rec)
				if err != nil {
					return err
				}
				if err := gaps.Put(seqKey(seq), js); err != nil {
					return err
				}
			}
		}
		return writeCounters(meta, c, q.Sequence()+1)
	})
	if err != nil {
		return 0, 0, err
	}
	return first, last, nil
}

// put stores d under the bucket's next sequence number.
func put(q *bolt.Bucket, c *counters, d []byte) (uint64, error) {
	seq, err := q.NextSequence()
	if err != nil {
		return 0, err
	}
	if err := q.Put(seqKey(seq), d); err != nil {
		return 0, err
	}
	c.bytes += int64(len(d))
	c.count++
	return seq, nil
}

// makeRoom deletes entries until c.bytes <= limit, accumulating what it deletes
// into gap. Observations go first, oldest first. Gap records are skipped: they
// are small, and keeping them means the span of every gap record only ever
// holds dropped observations and earlier, still stored, gap records, so spans
// never overlap. Only when no observation is left (the outbox holds nothing but
// gap records, after roughly MaxBytes/100 overflowing Appends with no ack) are
// the oldest gap records folded into gap, whose span then covers theirs.
func makeRoom(q, gaps *bolt.Bucket, c *counters, gap *Gap, limit int64) error {
	cur := q.Cursor()
	for k, v := cur.First(); k != nil && c.bytes > limit; {
		if gaps.Get(k) != nil {
			k, v = cur.Next()
			continue
		}
		seq := binary.BigEndian.Uint64(k)
		gap.extend(seq, seq)
		gap.Count++
		gap.Bytes += int64(len(v))
		c.dropped++
		c.bytes -= int64(len(v))
		c.count--
		if err := cur.Delete(); err != nil {
			return err
		}
		// Seek rather than Next: a bbolt cursor's Next after Delete can skip
		// an element.
		k, v = cur.Seek(seqKey(seq + 1))
	}
	for c.bytes > limit {
		k, v := cur.First()
		if k == nil {
			return fmt.Errorf("%w: gap record does not fit in MaxBytes", ErrTooLarge)
		}
		seq := binary.BigEndian.Uint64(k)
		var old Gap
		if err := json.Unmarshal(gaps.Get(k), &old); err != nil {
			return fmt.Errorf("outbox: gap record %d: %w", seq, err)
		}
		gap.extend(old.FirstSeq, seq)
		gap.Count += old.Count
		gap.Bytes += old.Bytes
		c.bytes -= int64(len(v))
		c.count--
		if err := gaps.Delete(k); err != nil {
			return err
		}
		if err := cur.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// extend widens g's span to include first..last.
func (g *Gap) extend(first, last uint64) {
	if g.FirstSeq == 0 || first < g.FirstSeq {
		g.FirstSeq = first
	}
	g.LastSeq = max(g.LastSeq, last)
}

// Pending returns copies of the entries with seq > after, in seq order, up to
// maxCount entries and maxBytes of data (zero or less means no limit). It
// returns at least one entry if any exists, even one larger than maxBytes, so a
// sender always makes progress.
func (o *Outbox) Pending(after uint64, maxBytes int, maxCount int) ([]Entry, error) {
	if after == math.MaxUint64 {
		return nil, nil
	}
	var out []Entry
	err := o.view(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketOutbox).Cursor()
		size := 0
		for k, v := cur.Seek(seqKey(after + 1)); k != nil; k, v = cur.Next() {
			if maxCount > 0 && len(out) >= maxCount {
				break
			}
			if maxBytes > 0 && len(out) > 0 && size+len(v) > maxBytes {
				break
			}
			// v is only valid inside the transaction.
			out = append(out, Entry{Seq: binary.BigEndian.Uint64(k), Data: bytes.Clone(v)})
			size += len(v)
		}
		return nil
	})
	return out, err
}

// errNoop rolls back a transaction that changed nothing, sparing an fsync.
var errNoop = errors.New("no-op")

// Ack deletes every entry with seq <= upTo and records upTo as last acked. An
// ack at or below the last one is a no-op; an ack beyond the last issued seq is
// an error (ErrBadAck): the server cannot have seen it.
func (o *Outbox) Ack(upTo uint64) error {
	err := o.update(func(tx *bolt.Tx) error {
		q, gaps, meta := tx.Bucket(bucketOutbox), tx.Bucket(bucketGaps), tx.Bucket(bucketMeta)
		if issued := q.Sequence(); upTo > issued {
			return fmt.Errorf("%w: ack %d, last issued %d", ErrBadAck, upTo, issued)
		}
		c := readCounters(meta)
		if upTo <= c.lastAcked {
			return errNoop
		}
		cur := q.Cursor()
		for k, v := cur.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, v = cur.First() {
			c.bytes -= int64(len(v))
			c.count--
			if err := cur.Delete(); err != nil {
				return err
			}
		}
		gc := gaps.Cursor()
		for k, _ := gc.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, _ = gc.First() {
			if err := gc.Delete(); err != nil {
				return err
			}
		}
		c.lastAcked = upTo
		return writeCounters(meta, c, q.Sequence()+1)
	})
	if errors.Is(err, errNoop) {
		return nil
	}
	return err
}

// Stats reports the outbox's counters and file size without scanning entries.
func (o *Outbox) Stats() (Stats, error) {
	var s Stats
	err := o.view(func(tx *bolt.Tx) error {
		c := readCounters(tx.Bucket(bucketMeta))
		s = Stats{
			Depth:     int(c.count),
			Bytes:     c.bytes,
			NextSeq:   tx.Bucket(bucketOutbox).Sequence() + 1,
			LastAcked: c.lastAcked,
			Dropped:   c.dropped,
		}
		fi, err := os.Stat(o.path)
		if err != nil {
			return err
		}
		s.FileBytes = fi.Size()
		return nil
	})
	return s, err
}

// SetMeta stores a caller value (device identity, for instance) in the meta
// bucket; a nil val deletes the key. Keys the outbox maintains are refused.
func (o *Outbox) SetMeta(key string, val []byte) error {
	if key == "" {
		return errors.New("outbox: empty meta key")
	}
	for _, r := range reservedMeta {
		if key == string(r) {
			return fmt.Errorf("outbox: meta key %q is reserved", key)
		}
	}
	return o.update(func(tx *bolt.Tx) error {
		if val == nil {
			return tx.Bucket(bucketMeta).Delete([]byte(key))
		}
		return tx.Bucket(bucketMeta).Put([]byte(key), val)
	})
}

// Meta returns a copy of the value stored under key, or nil, nil if absent.
// The outbox's own keys are readable too (counters are big-endian uint64,
// "last_gap" is JSON).
func (o *Outbox) Meta(key string) ([]byte, error) {
	var val []byte
	err := o.view(func(tx *bolt.Tx) error {
		val = bytes.Clone(tx.Bucket(bucketMeta).Get([]byte(key)))
		return nil
	})
	return val, err
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

func getUint(meta *bolt.Bucket, key []byte) uint64 {
	if v := meta.Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func readCounters(meta *bolt.Bucket) counters {
	return counters{
		lastAcked: getUint(meta, keyLastAcked),
		dropped:   getUint(meta, keyDropped),
		count:     getUint(meta, keyCount),
		bytes:     int64(getUint(meta, keyBytes)),
	}
}

func writeCounters(meta *bolt.Bucket, c counters, nextSeq uint64) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{keyNextSeq, nextSeq},
		{keyLastAcked, c.lastAcked},
		{keyDropped, c.dropped},
		{keyCount, c.count},
		{keyBytes, uint64(c.bytes)},
	} {
		if err := meta.Put(kv.k, seqKey(kv.v)); err != nil {
			return err
		}
	}
	return nil
}
