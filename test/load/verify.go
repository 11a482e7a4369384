//go:build linux

package main

import (
	"context"
	"fmt"

	"github.com/evident-dev/evident/server"
	"github.com/evident-dev/evident/server/store"
)

// counter is what the check reads of the store.
type counter interface {
	Counts(ctx context.Context, deviceID string) (store.ObservationCounts, error)
	Close() error
}

// openStore opens the servers' store read-only, as evident-server does for
// a spec (empty: the SQLite store of the data directory).
func openStore(dataDir, spec string) (counter, error) {
	return server.OpenStore(spec, dataDir, true)
}

// exactlyOnce is the outcome of the end-of-run check.
type exactlyOnce struct {
	Checked bool `json:"checked"`
	OK      bool `json:"ok"`
	// Devices and Observations checked (acknowledged observations).
	Devices      int    `json:"devices"`
	Observations uint64 `json:"observations"`
	// Undrained devices still had observations sent but unacknowledged
	// when the drain ran out: the store may hold any of them, so their
	// counts are only checked to lie within bounds.
	Undrained  int      `json:"undrained"`
	Unacked    uint64   `json:"unacked_observations"`
	Mismatches int      `json:"mismatches"`
	Examples   []string `json:"examples,omitempty"`
	Message    string   `json:"message"`
}

// checkExactlyOnce compares each device's acknowledged observations with
// what the store holds: with nothing left unacknowledged, the store must
// hold exactly the acknowledged count, seqs 1 to the highest acked.
func checkExactlyOnce(ctx context.Context, st counter, devices []result) (exactlyOnce, error) {
	x := exactlyOnce{Checked: true}
	for _, d := range devices {
		c, err := st.Counts(ctx, d.ID)
		if err != nil {
			return x, fmt.Errorf("counts of device %s: %w", d.ID, err)
		}
		x.Devices++
		x.Observations += d.AckedObs
		var bad string
		if d.Unacked == 0 {
			if c.Total != int(d.AckedObs) || c.MaxSeq != d.AckedSeq || (c.Total > 0 && c.MinSeq != 1) {
				bad = fmt.Sprintf("acked %d observations up to seq %d; the store holds %d, seqs %d-%d", d.AckedObs, d.AckedSeq, c.Total, c.MinSeq, c.MaxSeq)
			}
		} else {
			x.Undrained++
			x.Unacked += d.Unacked
			if c.Total < int(d.AckedObs) || c.Total > int(d.AckedObs+d.Unacked) || c.MaxSeq < d.AckedSeq || c.MaxSeq > d.SentSeq {
				bad = fmt.Sprintf("acked %d observations up to seq %d and sent %d more up to seq %d; the store holds %d, seqs %d-%d",
					d.AckedObs, d.AckedSeq, d.Unacked, d.SentSeq, c.Total, c.MinSeq, c.MaxSeq)
			}
		}
		if bad != "" {
			x.Mismatches++
			if len(x.Examples) < 20 {
				x.Examples = append(x.Examples, fmt.Sprintf("device %s (load-%06d, %s): %s", d.ID, d.Index, d.Target, bad))
			}
		}
	}
	switch {
	case x.Mismatches > 0:
		x.Message = fmt.Sprintf("exactly-once: FAILED: %d of %d devices do not match the store", x.Mismatches, x.Devices)
	case x.Undrained > 0:
		x.Message = fmt.Sprintf("exactly-once: not proven: %d devices still had %d observations unacknowledged after -drain "+
			"(their stored counts are within bounds); %d devices, %d acknowledged observations stored", x.Undrained, x.Unacked, x.Devices, x.Observations)
	default:
		x.OK = true
		x.Message = fmt.Sprintf("exactly-once: %d devices, %d observations, all stored once", x.Devices, x.Observations)
	}
	return x, nil
}
