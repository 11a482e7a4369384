package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHalfOpenConnectionsDoNotStarveAgents: a server limited to 256 open
// files, and an attacker (from another source address) opening plain TCP
// connections as fast as it can and never starting a TLS handshake: a
// legitimate agent still delivers within 30 s. Without the per-source
// limit and the handshake timeout the attacker holds every descriptor and
// the agent cannot connect.
func TestHalfOpenConnectionsDoNotStarveAgents(t *testing.T) {
	root := t.TempDir()
	srvDir, agentDir := filepath.Join(root, "server"), filepath.Join(root, "agent")
	// Enroll first, on an ordinary server, then restart it with the low
	// limit on the same address.
	srv := startServer(t, srvDir, "127.0.0.1:0")
	addr := srv.addr
	enroll(t, srv, agentDir, srv.token(t))
	srv.p.stop(t)
	os.Remove(filepath.Join(srvDir, "listen.addr"))
	start(t, "server-limited.log", "/bin/sh", "-c", "ulimit -n 256 && exec "+serverBin+" run --data-dir "+srvDir+" --listen "+addr)
	waitFor(t, "the limited server to listen", 20*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(srvDir, "listen.addr"))
		return err == nil && len(bytes.TrimSpace(b)) > 0
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var held atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: time.Second}
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				conns = append(conns, c) // held, never a byte sent
				held.Add(1)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, "the attacker to open connections", 10*time.Second, func() bool { return held.Load() > 500 })

	began := time.Now()
	out, e, err := run(t, nil, agentBin, "run", "--once", "--data-dir", agentDir, "--collectors", "osinfo", "--once-timeout", "30s")
	if err != nil {
		t.Fatalf("the agent did not deliver within 30 s while %d connections were opened against the server: %v\n%s%s", held.Load(), err, out, e)
	}
	t.Logf("agent delivered in %s while the attacker had opened %d connections", time.Since(began).Round(time.Millisecond), held.Load())
}
