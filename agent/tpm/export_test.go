package tpm

import "github.com/google/go-tpm/tpm2/transport"

// Intercept makes every command sent to t go through f, which gets the
// original transport (tests only).
func Intercept(t *TPM, f func(inner transport.TPM, cmd []byte) ([]byte, error)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.t = interceptor{t.t, f}
}

type interceptor struct {
	transport.TPMCloser
	f func(inner transport.TPM, cmd []byte) ([]byte, error)
}

func (i interceptor) Send(cmd []byte) ([]byte, error) { return i.f(i.TPMCloser, cmd) }
