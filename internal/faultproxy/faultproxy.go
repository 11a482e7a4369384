// Package faultproxy is a TCP proxy on loopback that injects network faults
// between an agent and a server, for the end-to-end and chaos tests: a
// partition (what the agent sends is swallowed), lost acknowledgements (what
// the server sends is swallowed) and cut connections.
package faultproxy

import (
	"net"
	"sync"
	"sync/atomic"
)

// Proxy forwards connections from its listener to Target. In Blackhole mode
// it swallows what the client sends (reports leave the agent but never reach
// the server, and no ack comes back), like a network partition. In DropAcks
// mode it swallows what the server sends: reports are stored but the agent
// never hears so. Cut drops every connection and leaves both modes.
type Proxy struct {
	Blackhole atomic.Bool
	DropAcks  atomic.Bool
	// Swallowed counts the client bytes Blackhole swallowed.
	Swallowed atomic.Int64

	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

// Listen starts a proxy on a free loopback port forwarding to target.
func Listen(target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{lis: lis, target: target}
	go p.serve()
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Close stops accepting and drops every connection.
func (p *Proxy) Close() error {
	err := p.lis.Close()
	p.Cut()
	return err
}

func (p *Proxy) serve() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s, func(n int) bool {
			if p.Blackhole.Load() {
				p.Swallowed.Add(int64(n))
				return false
			}
			return true
		})
		go p.pipe(s, c, func(int) bool { return !p.DropAcks.Load() })
	}
}

// pipe copies from src to dst what pass lets through, until either side
// fails, then closes dst.
func (p *Proxy) pipe(src, dst net.Conn, pass func(n int) bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && pass(n) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
}

// Cut closes every proxied connection and leaves both fault modes.
func (p *Proxy) Cut() {
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.Blackhole.Store(false)
	p.DropAcks.Store(false)
}
