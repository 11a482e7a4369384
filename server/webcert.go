package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certFiles serves the organisation's web certificate from a certificate
// and a key file, and picks up a renewed pair without a restart: each TLS
// handshake looks at the files' size and modification time, and loads
// them again when either changed. A pair that does not load (half
// written, or a key that does not match) leaves the last good one in
// service, and is logged once per change.
type certFiles struct {
	certPath, keyPath string
	log               *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	stamp  string // size and mtime of both files when cert was loaded or last refused
	notify string // the stamp of the last refusal logged
}

// loadCertFiles reads the pair once: a server must not start on a pair
// that does not load.
func loadCertFiles(certPath, keyPath string, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{certPath: certPath, keyPath: keyPath, log: log}
	stamp, err := c.stampNow()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("--web-cert %s, --web-key %s: %w", certPath, keyPath, err)
	}
	c.cert, c.stamp = &cert, stamp
	return c, nil
}

func (c *certFiles) stampNow() (string, error) {
	var s string
	for _, p := range []string{c.certPath, c.keyPath} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d:%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// Get is tls.Config.GetCertificate.
func (c *certFiles) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamp, err := c.stampNow()
	if err != nil || stamp == c.stamp {
		return c.cert, nil // unreadable for now (being replaced?): the last good pair
	}
	cert, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		if c.notify != stamp {
			c.notify = stamp
			c.log.Warn("the web certificate files changed but do not load; serving the previous certificate", "cert", c.certPath, "key", c.keyPath, "err", err)
		}
		return c.cert, nil
	}
	c.cert, c.stamp = &cert, stamp
	if leaf := cert.Leaf; leaf != nil {
		c.log.Info("web certificate reloaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return c.cert, nil
}
