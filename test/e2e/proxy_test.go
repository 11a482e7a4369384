package e2e

import (
	"testing"

	"github.com/evident-dev/evident/internal/faultproxy"
)

// newFaultProxy starts a fault proxy to target, closed when the test ends.
func newFaultProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Listen(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
