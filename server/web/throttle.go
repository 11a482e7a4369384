package web

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Throttling of failed logins and bearer tokens, per source address: after
// maxFailures in failWindow, every attempt from that source is answered 429
// until the window ends. Each failure is audited until then, and the
// throttling once, so anonymous requests cannot grow the audit log without
// bound. (Behind a proxy the source is the proxy: put the limit there too.)
const (
	maxFailures = 10
	failWindow  = 10 * time.Minute
	// maxSources bounds the sources remembered: past it, the oldest
	// windows are dropped first.
	maxSources = 100_000
)

type failures struct {
	mu  sync.Mutex
	src map[string]*failCount
}

type failCount struct {
	start     time.Time
	n         int
	throttled bool
}

func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// blocked reports whether src is throttled at now, and for how long more.
func (f *failures) blocked(src string, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.src[src]
	if c == nil || !now.Before(c.start.Add(failWindow)) || c.n < maxFailures {
		return 0, false
	}
	return c.start.Add(failWindow).Sub(now), true
}

// fail counts a failure of src at now. audit says whether to write it to
// the audit log: the failures up to the limit are, and the first refusal
// after it (noted as the throttling), no more.
func (f *failures) fail(src string, now time.Time) (audit bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.src == nil {
		f.src = map[string]*failCount{}
	}
	c := f.src[src]
	if c == nil || !now.Before(c.start.Add(failWindow)) {
		if len(f.src) >= maxSources {
			f.prune(now)
		}
		c = &failCount{start: now}
		f.src[src] = c
	}
	c.n++
	return c.n <= maxFailures
}

// noteThrottled reports whether src's throttling is new (to be audited
// once).
func (f *failures) noteThrottled(src string) bool {
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
func (f *failures) prune(now time.Time) {
	for k, c := range f.src {
		if !now.Before(c.start.Add(failWindow)) {
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

// throttled answers 429 when the request's source is throttled, auditing
// the first such answer of the window. It reports whether it answered.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request, action string, api bool) bool {
	src := sourceAddr(r)
	wait, blocked := s.fails.blocked(src, s.now())
	if !blocked {
		return false
	}
	if s.fails.noteThrottled(src) {
		s.audit(r.Context(), anonymous(r), action+".throttled", strconv.Itoa(maxFailures)+" failures in "+failWindow.String()+"; refused until "+s.now().Add(wait).UTC().Format(time.RFC3339))
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	msg := "Too many failed attempts from this address: try again in " + wait.Round(time.Second).String() + "."
	if api {
		writeJSONError(w, http.StatusTooManyRequests, msg)
	} else {
		s.renderLogin(w, r, http.StatusTooManyRequests, msg)
	}
	return true
}
