package tpm

import "github.com/google/go-tpm/tpm2/transport"

// OpenTransport opens a Device on tc, as Open does after connecting (tests
// only: the go-tpm-tools simulator).
func OpenTransport(tc transport.TPMCloser, eventLog string) (*Device, error) {
	return openTransport(tc, eventLog)
}

// Raw connects to what a non-empty spec names and starts the TPM, without
// go-attestation (tests only: extend PCRs before Open).
func Raw(spec string) (transport.TPMCloser, error) {
	tc, err := openSpec(spec)
	if err != nil {
		return nil, err
	}
	if err := startup(tc); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// Retrying wraps tc as Open does: commands answered with TPM_RC_RETRY are
// sent again (tests only).
func Retrying(tc transport.TPMCloser) transport.TPMCloser { return &retryTPM{t: tc} }

// Intercept makes every command d sends go through f, which gets the
// original transport (tests only; not for the platform TPM).
func Intercept(d *Device, f func(inner transport.TPM, cmd []byte) ([]byte, error)) {
	d.rt.mu.Lock()
	defer d.rt.mu.Unlock()
	d.rt.t = interceptor{d.rt.t, f}
}

type interceptor struct {
	transport.TPMCloser
	f func(inner transport.TPM, cmd []byte) ([]byte, error)
}

func (i interceptor) Send(cmd []byte) ([]byte, error) { return i.f(i.TPMCloser, cmd) }
