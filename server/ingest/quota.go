package ingest

import (
	"sync"
	"time"
)

// Per-device ingest quotas: a device (its certificate: a copied key, a
// runaway agent) cannot write without bound. Each is a token bucket that
// holds an hour's allowance and refills at that rate.
const (
	DefaultQuotaObservations = 100_000
	DefaultQuotaBytes        = 256 << 20
)

type quotas struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	obs, bytes float64
	last       time.Time
	// noted is when the device was last recorded as over its quota.
	noted time.Time
}

// take spends n observations of size bytes from the device's allowance at
// now; false (spending nothing) when it has not that much left. noteNow
// says the refusal should be recorded (once an hour per device).
func (q *quotas) take(device string, n, size int, now time.Time, maxObs, maxBytes int) (ok, noteNow bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.buckets == nil {
		q.buckets = map[string]*bucket{}
	}
	if now.Sub(q.swept) > time.Hour {
		// Devices idle for an hour are back to a full allowance: forget them.
		for id, b := range q.buckets {
			if now.Sub(b.last) > time.Hour {
				delete(q.buckets, id)
			}
		}
		q.swept = now
	}
	b := q.buckets[device]
	if b == nil {
		b = &bucket{obs: float64(maxObs), bytes: float64(maxBytes), last: now}
		q.buckets[device] = b
	}
	if d := now.Sub(b.last); d > 0 {
		frac := d.Hours()
		b.obs = min(float64(maxObs), b.obs+frac*float64(maxObs))
		b.bytes = min(float64(maxBytes), b.bytes+frac*float64(maxBytes))
		b.last = now
	}
	if float64(n) > b.obs || float64(size) > b.bytes {
		if now.Sub(b.noted) >= time.Hour {
			b.noted = now
			return false, true
		}
		return false, false
	}
	b.obs -= float64(n)
	b.bytes -= float64(size)
	return true, false
}

// refund gives back what take spent for a report that was then not stored
// (the server was too busy): a refusal must not use up the allowance.
func (q *quotas) refund(device string, n, size int, maxObs, maxBytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if b := q.buckets[device]; b != nil {
		b.obs = min(float64(maxObs), b.obs+float64(n))
		b.bytes = min(float64(maxBytes), b.bytes+float64(size))
	}
}
