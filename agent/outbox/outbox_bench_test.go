package outbox

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// One collection cycle: 8 observations of about 1 KiB. Both benchmarks store
// the same values, on the same kind of file, with bbolt's default fsync on
// commit, one transaction per op, so the ratio of their obs/s is the cost of
// the outbox's bookkeeping (meta counters, bound check) over bbolt itself.
const benchObs = 8

func benchCycle() [][]byte {
	cycle := make([][]byte, benchObs)
	for i := range cycle {
		cycle[i] = item(i, 1024)
	}
	return cycle
}

func reportObs(b *testing.B) {
	b.ReportMetric(float64(b.N*benchObs)/b.Elapsed().Seconds(), "obs/s")
}

func BenchmarkAppend(b *testing.B)       { benchAppend(b, false) }
func BenchmarkRawBoltBatch(b *testing.B) { benchRaw(b, false) }

// The NoSync pair takes the disk out, leaving the CPU cost alone, where the
// bookkeeping overhead is visible instead of lost in fsync noise.
func BenchmarkAppendNoSync(b *testing.B)       { benchAppend(b, true) }
func BenchmarkRawBoltBatchNoSync(b *testing.B) { benchRaw(b, true) }

func benchAppend(b *testing.B, noSync bool) {
	o, err := Open(filepath.Join(b.TempDir(), "outbox.db"), Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	cycle := benchCycle()
	b.SetBytes(benchObs * 1024)
	for b.Loop() {
		if _, _, err := o.Append(cycle...); err != nil {
			b.Fatal(err)
		}
	}
	reportObs(b)
}

func benchRaw(b *testing.B, noSync bool) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bolt.Options{Timeout: DefaultTimeout, NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	name := []byte("outbox")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(name)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	cycle := benchCycle()
	b.SetBytes(benchObs * 1024)
	for b.Loop() {
		err := db.Update(func(tx *bolt.Tx) error {
			q := tx.Bucket(name)
			for _, d := range cycle {
				seq, err := q.NextSequence()
				if err != nil {
					return err
				}
				if err := q.Put(seqKey(seq), d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	reportObs(b)
}
