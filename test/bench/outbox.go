//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/evident-dev/evident/agent/outbox"
)

// benchOutbox appends n collection cycles through the outbox (one fsynced
// transaction per cycle, as the agent does) and writes the same values with
// plain bbolt Update + NextSequence, the raw limit.
func benchOutbox(dir string, cycle [][]byte, n int) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(err)
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"), outbox.Options{})
	if err != nil {
		fail(err)
	}
	t0 := time.Now()
	for range n {
		if _, _, err := ob.Append(cycle...); err != nil {
			fail(err)
		}
	}
	outboxDur := time.Since(t0)
	ob.Close()

	db, err := bolt.Open(filepath.Join(dir, "raw.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		fail(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("q")); return err }); err != nil {
		fail(err)
	}
	t0 = time.Now()
	for range n {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("q"))
			for _, v := range cycle {
				seq, _ := b.NextSequence()
				k := make([]byte, 8)
				for i := range 8 {
					k[i] = byte(seq >> (56 - 8*i))
				}
				if err := b.Put(k, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			fail(err)
		}
	}
	rawDur := time.Since(t0)
	db.Close()
	total := float64(n * len(cycle))
	o, r := total/outboxDur.Seconds(), total/rawDur.Seconds()
	fmt.Println("Outbox (bbolt, fsync per collection cycle)")
	fmt.Printf("  outbox.Append   %9.0f observations/s  (%d cycles of %d, %s per cycle)\n", o, n, len(cycle), (outboxDur / time.Duration(n)).Round(time.Microsecond))
	fmt.Printf("  raw bbolt Update %8.0f observations/s  (same values, same fsync)\n", r)
	fmt.Printf("  ratio outbox/raw %s\n\n", ratio(o, r))
}
