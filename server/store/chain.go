package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// Chain is the per-device hash chain over stored observations (README: For auditors;
// tamper evidence).
//
// Every observation a device's Ingest newly stores is appended to that
// device's chain: it gets the next ChainIndex (1, 2, 3, … in order of
// insertion, not of seq, since a resend after a reconnect may deliver seqs
// out of order) and
//
//	chain_hash = ChainHash(prev, deviceID, chain_index, observation)
//
// where prev is the chain hash of chain index-1, or GenesisHash (32 zero
// bytes) for chain index 1. A duplicate (device_id, seq) that Ingest ignores
// does not advance the chain. The head is updated in the same transaction as
// the inserts. Observations stored before the chain existed (databases
// created before schema 3) have ChainIndex 0 and no hash: they are
// "unchained", covered only by a bundle's signature.
type Chain interface {
	// ChainHead returns a device's newest chain link: Index 0 and
	// GenesisHash when the device has no chained observation (or does not
	// exist).
	ChainHead(ctx context.Context, deviceID string) (ChainLink, error)
	// ObservationsForExport calls fn for a device's observations received
	// in [from, to): first the unchained ones (by received_at, seq), then
	// the contiguous chain segment from the first to the last chained
	// observation received in the window, by chain index. The segment is
	// contiguous so that it verifies on its own: its first record carries
	// PrevHash. fn must not call the store (rows are open while it runs); an
	// error from fn stops the walk and is returned.
	ObservationsForExport(ctx context.Context, deviceID string, from, to time.Time, fn func(ChainedObservation) error) error
}

// ChainLink is one position of a device's chain.
type ChainLink struct {
	Index uint64
	Hash  []byte
}

// ChainedObservation is a stored observation with its chain position.
type ChainedObservation struct {
	DeviceID string
	Observation
	// ChainIndex is the 1-based position in the device's chain; 0 for an
	// observation stored before the chain existed (unchained).
	ChainIndex uint64
	// PrevHash is the chain hash of ChainIndex-1 (GenesisHash for index 1);
	// nil when unchained.
	PrevHash []byte
	// ChainHash is the hash stored at ingest; nil when unchained.
	ChainHash []byte
	// Pruned says the retention rule dropped the content (payload,
	// sources, error): ChainHash can no longer be recomputed, only linked.
	Pruned bool
}

// ChainVersion names the canonical encoding below; it is the first field
// hashed, so a future encoding can never collide with this one.
const ChainVersion = "evident-chain-v1"

// GenesisHash is the prev of every device's first chained observation.
var GenesisHash = make([]byte, sha256.Size)

// ChainHash returns SHA-256(prev || encoding), the encoding being, in order:
//
//	str(ChainVersion) str(deviceID) u64(chainIndex) u64(seq) str(collector)
//	i64(collected_at) i64(received_at) u8(clock_skew) str(status) str(error)
//	i64(parser_version) str(payload) str(sources) i64(duration_ms)
//
// with str(b) = u32 big-endian length || bytes, u64/i64 8 bytes big-endian
// (two's complement), u8 one byte (1 true, 0 false), and times as Unix
// nanoseconds UTC (exactly what the store keeps). A nil and an empty payload
// encode alike. Every variable field is length-prefixed, so no two
// different observations share an encoding.
func ChainHash(prev []byte, deviceID string, chainIndex uint64, o Observation) []byte {
	h := sha256.New()
	h.Write(prev)
	var buf [8]byte
	str := func(b []byte) {
		binary.BigEndian.PutUint32(buf[:4], uint32(len(b)))
		h.Write(buf[:4])
		h.Write(b)
	}
	u64 := func(v uint64) {
		binary.BigEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	str([]byte(ChainVersion))
	str([]byte(deviceID))
	u64(chainIndex)
	u64(o.Seq)
	str([]byte(o.Collector))
	u64(uint64(o.CollectedAt.UnixNano()))
	u64(uint64(o.ReceivedAt.UnixNano()))
	if o.ClockSkew {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	str([]byte(o.Status))
	str([]byte(o.Error))
	u64(uint64(int64(o.ParserVersion)))
	str(o.Payload)
	str(o.Sources)
	u64(uint64(int64(o.DurationMS)))
	return h.Sum(nil)
}
