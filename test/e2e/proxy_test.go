package e2e

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// faultProxy sits between agent and server on loopback. In blackhole mode
// it swallows what the agent sends (reports leave the agent but never reach
// the server, and no ack comes back), like a network partition. In dropAcks
// mode it swallows what the server sends: reports are stored but the agent
// never hears so. cut then drops every connection.
type faultProxy struct {
	lis       net.Listener
	target    string
	blackhole atomic.Bool
	dropAcks  atomic.Bool
	mu        sync.Mutex
	conns     []net.Conn
	swallowed atomic.Int64
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{lis: lis, target: target}
	t.Cleanup(func() { lis.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *faultProxy) addr() string { return p.lis.Addr().String() }

func (p *faultProxy) serve() {
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
		go func() { // agent -> server
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if p.blackhole.Load() {
						p.swallowed.Add(int64(n))
					} else if _, werr := s.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			s.Close()
		}()
		go func() { // server -> agent
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && !p.dropAcks.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}()
	}
}

// cut closes every proxied connection and leaves both fault modes.
func (p *faultProxy) cut() {
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.blackhole.Store(false)
	p.dropAcks.Store(false)
}
