package ingest

import (
	"net"
	"sync"
	"time"
)

// Connection limits: what keeps one source holding connections from
// starving the agents and the web UI of file descriptors.
const (
	// HandshakeTimeout bounds the TLS handshake (gRPC's default is 120 s:
	// a connection that never finishes its handshake holds a descriptor
	// that long).
	HandshakeTimeout = 10 * time.Second
	// DefaultHalfOpenPerSource bounds the connections one source address
	// may have open before their TLS handshake completes.
	DefaultHalfOpenPerSource = 32
	// fdReserve is kept free under the process's descriptor limit for the
	// store, the web UI and the logs.
	fdReserve = 64
)

// LimitListener wraps the gRPC listener: a source address with
// halfOpen (default DefaultHalfOpenPerSource) connections still in their
// TLS handshake gets its next one closed at once, and so does anyone once
// the server holds as many connections as its descriptor limit allows
// (less fdReserve). Connections past their handshake count only against
// the total.
func (s *Server) LimitListener(lis net.Listener, halfOpen int) net.Listener {
	if halfOpen <= 0 {
		halfOpen = DefaultHalfOpenPerSource
	}
	max := 0
	if n := fdLimit(); n > fdReserve {
		max = n - fdReserve
	}
	return &limitListener{Listener: lis, halfOpen: halfOpen, max: max, pending: map[string]int{}, s: s}
}

type limitListener struct {
	net.Listener
	halfOpen, max int
	s             *Server

	mu      sync.Mutex
	pending map[string]int // source address: connections before their handshake
	total   int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := hostOf(c.RemoteAddr())
		l.mu.Lock()
		refuse := l.pending[src] >= l.halfOpen || (l.max > 0 && l.total >= l.max)
		if !refuse {
			l.pending[src]++
			l.total++
		}
		l.mu.Unlock()
		if refuse {
			c.Close()
			l.s.metrics().connsRefused.Inc()
			continue
		}
		return &limitedConn{Conn: c, l: l, src: src, pending: true}, nil
	}
}

type limitedConn struct {
	net.Conn
	l       *limitListener
	src     string
	mu      sync.Mutex
	pending bool
	closed  bool
}

// handshaken moves the connection out of its source's half-open count.
func (c *limitedConn) handshaken() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending && !c.closed {
		c.pending = false
		c.l.release(c.src, true, false)
	}
}

func (c *limitedConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		c.l.release(c.src, c.pending, true)
		c.pending = false
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

func (l *limitListener) release(src string, pending, closing bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pending {
		if l.pending[src]--; l.pending[src] <= 0 {
			delete(l.pending, src)
		}
	}
	if closing {
		l.total--
	}
}
