package web

import (
	"net"
	"net/http"
	"strconv"
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
)

func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// throttled answers 429 when the request's source is throttled, auditing
// the first such answer of the window. It reports whether it answered.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request, action string, api bool) bool {
	src := sourceAddr(r)
	wait, blocked := s.fails.Blocked(src, s.now())
	if !blocked {
		return false
	}
	if s.fails.NoteThrottled(src) {
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
