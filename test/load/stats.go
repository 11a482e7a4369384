//go:build linux

package main

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Latency buckets: eight per doubling from 10 µs, so a quantile read from
// them is within 9 % of the truth, up to about 22 minutes.
const (
	bucketBase    = 10 * time.Microsecond
	bucketsPerDbl = 8
	nBuckets      = 27 * bucketsPerDbl
)

// histogram counts durations in the latency buckets.
type histogram [nBuckets]uint64

func bucketOf(d time.Duration) int {
	if d <= bucketBase {
		return 0
	}
	i := int(bucketsPerDbl * math.Log2(float64(d)/float64(bucketBase)))
	return min(i, nBuckets-1)
}

// upper is the upper bound of bucket i.
func upper(i int) time.Duration {
	return time.Duration(float64(bucketBase) * math.Exp2(float64(i+1)/bucketsPerDbl))
}

func (h *histogram) add(o *histogram) {
	for i := range h {
		h[i] += o[i]
	}
}

func (h *histogram) sub(o *histogram) {
	for i := range h {
		h[i] -= o[i]
	}
}

func (h *histogram) count() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// quantile returns the upper bound of the bucket holding quantile q, or 0
// when the histogram is empty.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range h {
		if seen += c; seen >= max(rank, 1) {
			return upper(i)
		}
	}
	return upper(nBuckets - 1)
}

// stats is what a worker reports, cumulative since it started, and what the
// parent sums over its workers.
type stats struct {
	// At is when the figures were read (Unix ns); a sum has its workers'
	// oldest.
	At           int64 `json:"at"`
	Enrolled     int64 `json:"enrolled"`
	EnrollFailed int64 `json:"enroll_failed"`
	// LastEnrolled is when the latest enrollment finished (Unix ns).
	LastEnrolled int64 `json:"last_enrolled"`
	// Streams is how many streams are open now.
	Streams int64 `json:"streams"`
	// Closed counts streams ended cleanly at the end of the run.
	Closed int64 `json:"closed"`
	// Sent counts reports sent, resends included; Reports and
	// Observations count what was acknowledged, each once.
	Sent         int64            `json:"sent"`
	Reports      int64            `json:"reports"`
	Observations int64            `json:"observations"`
	Errors       map[string]int64 `json:"errors,omitempty"`
	Latency      histogram        `json:"latency"`
	// EnrollLatency is each successful Enroll call, its TLS handshake
	// included.
	EnrollLatency histogram `json:"enroll_latency"`
	// CPU and RSS of the worker process itself.
	CPU    time.Duration `json:"cpu_ns"`
	RSSKiB int64         `json:"rss_kib"`
}

func (s *stats) add(o stats) {
	if s.At == 0 || o.At < s.At {
		s.At = o.At
	}
	s.Enrolled += o.Enrolled
	s.EnrollFailed += o.EnrollFailed
	s.LastEnrolled = max(s.LastEnrolled, o.LastEnrolled)
	s.Streams += o.Streams
	s.Closed += o.Closed
	s.Sent += o.Sent
	s.Reports += o.Reports
	s.Observations += o.Observations
	for k, v := range o.Errors {
		if s.Errors == nil {
			s.Errors = map[string]int64{}
		}
		s.Errors[k] += v
	}
	s.Latency.add(&o.Latency)
	s.EnrollLatency.add(&o.EnrollLatency)
	s.CPU += o.CPU
	s.RSSKiB += o.RSSKiB
}

// overloadKind marks the error kinds of reports the server refused as
// overloaded (a retryable Unavailable), counted apart from other errors.
const overloadKind = "(overloaded)"

// errorTotals returns the overload refusals and every other error.
func (s *stats) errorTotals() (overloaded, other int64) {
	for k, v := range s.Errors {
		if strings.Contains(k, overloadKind) {
			overloaded += v
		} else {
			other += v
		}
	}
	return overloaded, other
}

// errorList renders the error kinds, most frequent first.
func (s *stats) errorList() string {
	if len(s.Errors) == 0 {
		return "none"
	}
	keys := slices.SortedFunc(maps.Keys(s.Errors), func(a, b string) int {
		if s.Errors[a] != s.Errors[b] {
			return int(s.Errors[b] - s.Errors[a])
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(k + " " + itoa(s.Errors[k]))
	}
	return b.String()
}

// meter is a worker's live counters, updated by every device goroutine.
type meter struct {
	enrolled, enrollFailed, lastEnrolled atomic.Int64
	streams, closed                      atomic.Int64
	sent, reports, observations          atomic.Int64
	latency, enrollLatency               [nBuckets]atomic.Uint64

	mu     sync.Mutex
	errors map[string]int64
}

func (m *meter) fail(kind string) {
	m.mu.Lock()
	if m.errors == nil {
		m.errors = map[string]int64{}
	}
	m.errors[kind]++
	m.mu.Unlock()
}

func (m *meter) enrolledNow(t time.Time, took time.Duration) {
	m.enrolled.Add(1)
	m.enrollLatency[bucketOf(took)].Add(1)
	for {
		old := m.lastEnrolled.Load()
		if t.UnixNano() <= old || m.lastEnrolled.CompareAndSwap(old, t.UnixNano()) {
			return
		}
	}
}

func (m *meter) acked(observations int, latency time.Duration) {
	m.reports.Add(1)
	m.observations.Add(int64(observations))
	m.latency[bucketOf(latency)].Add(1)
}

func (m *meter) snapshot() stats {
	s := stats{
		At:       time.Now().UnixNano(),
		Enrolled: m.enrolled.Load(), EnrollFailed: m.enrollFailed.Load(), LastEnrolled: m.lastEnrolled.Load(),
		Streams: m.streams.Load(), Closed: m.closed.Load(),
		Sent: m.sent.Load(), Reports: m.reports.Load(), Observations: m.observations.Load(),
	}
	for i := range m.latency {
		s.Latency[i] = m.latency[i].Load()
		s.EnrollLatency[i] = m.enrollLatency[i].Load()
	}
	m.mu.Lock()
	s.Errors = maps.Clone(m.errors)
	m.mu.Unlock()
	return s
}
