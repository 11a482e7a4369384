// Package throttle slows down guessing: it counts failed attempts (a wrong
// web token, a wrong enrollment secret) per source address and tells the
// caller when a source has failed too often, and when to audit.
package throttle

import (
	"sync"
	"time"
)

// maxSources bounds the sources remembered.
const maxSources = 100_000

// Failures counts failed attempts per source address in fixed windows:
// after Max failures within Window a source is throttled until its window
// ends. At most maxSources sources are remembered (the oldest windows go
// first).
type Failures struct {
	Max    int
	Window time.Duration

	mu  sync.Mutex
	src map[string]*failCount
}

type failCount struct {
	start     time.Time
	n         int
	throttled bool
}

// Blocked reports whether src is throttled at now, and for how long more.
func (f *Failures) Blocked(src string, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.src[src]
	if c == nil || !now.Before(c.start.Add(f.Window)) || c.n < f.Max {
		return 0, false
	}
	return c.start.Add(f.Window).Sub(now), true
}

// Fail counts a failure of src at now. audit says whether to write it to
// the audit log: the failures up to the limit are, and the first refusal
// after it (noted as the throttling), no more.
func (f *Failures) Fail(src string, now time.Time) (audit bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.src == nil {
		f.src = map[string]*failCount{}
	}
	c := f.src[src]
	if c == nil || !now.Before(c.start.Add(f.Window)) {
		if len(f.src) >= maxSources {
			f.prune(now)
		}
		c = &failCount{start: now}
		f.src[src] = c
	}
	c.n++
	return c.n <= f.Max
}

// NoteThrottled reports whether src's throttling is new (to be audited
// once).
func (f *Failures) NoteThrottled(src string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.src[src]
	if c == nil || c.throttled {
		return false
	}
	c.throttled = true
	return true
}

// prune drops the windows that have ended, then, while still too many, the
// oldest ones.
func (f *Failures) prune(now time.Time) {
	for k, c := range f.src {
		if !now.Before(c.start.Add(f.Window)) {
			delete(f.src, k)
		}
	}
	for len(f.src) >= maxSources {
		var oldest string
		var at time.Time
		for k, c := range f.src {
			if oldest == "" || c.start.Before(at) {
				oldest, at = k, c.start
			}
		}
		delete(f.src, oldest)
	}
}
