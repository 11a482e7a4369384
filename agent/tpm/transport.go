package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

const (
	// DialTimeout bounds connecting to an swtpm.
	DialTimeout = 5 * time.Second
	// CommandTimeout bounds one command on an swtpm connection (RSA key
	// generation is the slow one).
	CommandTimeout = 2 * time.Minute
	// maxResponse bounds a response read from a stream.
	maxResponse = 1 << 16
	// maxBackoff is the last pause before a command still answered with
	// TPM_RC_RETRY is given up (1 ms doubling: about 4 s in all).
	maxBackoff = 2 * time.Second
)

// streamTPM sends raw TPM commands over a stream (swtpm's data port, TCP or
// Unix socket) and reads each response whole: header first, then the size
// it announces (one Read may return part of a response).
type streamTPM struct {
	c net.Conn
}

func dialStream(network, addr string) (transport.TPMCloser, error) {
	c, err := net.DialTimeout(network, addr, DialTimeout)
	if err != nil {
		return nil, err
	}
	return &streamTPM{c: c}, nil
}

func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	if err := s.c.SetDeadline(time.Now().Add(CommandTimeout)); err != nil {
		return nil, err
	}
	if _, err := s.c.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm: send: %w", err)
	}
	var hdr [10]byte // tag, size, response code
	if _, err := io.ReadFull(s.c, hdr[:]); err != nil {
		return nil, fmt.Errorf("tpm: read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:])
	if size < uint32(len(hdr)) || size > maxResponse {
		return nil, fmt.Errorf("tpm: response size %d out of range", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(s.c, rsp[len(hdr):]); err != nil {
		return nil, fmt.Errorf("tpm: read response: %w", err)
	}
	return rsp, nil
}

func (s *streamTPM) Close() error { return s.c.Close() }

// retryTPM serialises commands and sends again, after a growing pause, a
// command the TPM answers with TPM_RC_RETRY, TPM_RC_YIELDED or
// TPM_RC_TESTING.
type retryTPM struct {
	mu sync.Mutex
	t  transport.TPMCloser
}

func (r *retryTPM) Send(cmd []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.t == nil {
		return nil, errors.New("tpm: closed")
	}
	for backoff := time.Millisecond; ; backoff *= 2 {
		rsp, err := r.t.Send(cmd)
		if err != nil || len(rsp) < 10 || backoff > maxBackoff {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			time.Sleep(backoff)
		default:
			return rsp, nil
		}
	}
}

func (r *retryTPM) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.t == nil {
		return nil
	}
	err := r.t.Close()
	r.t = nil
	return err
}

// channel adapts a transport to go-attestation's CommandChannelTPM20: Write
// sends a command, Read returns its response. (go-tpm's
// transport.ToReadWriter returns io.EOF with the last bytes of a response,
// which go-tpm's legacy command runner, used by go-attestation, treats as a
// failure.)
type channel struct {
	t       transport.TPMCloser
	rsp     []byte
	logPath string
}

func (c *channel) Write(cmd []byte) (int, error) {
	rsp, err := c.t.Send(cmd)
	if err != nil {
		c.rsp = nil
		return 0, err
	}
	c.rsp = rsp
	return len(cmd), nil
}

func (c *channel) Read(p []byte) (int, error) {
	if len(c.rsp) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.rsp)
	c.rsp = c.rsp[n:]
	return n, nil
}

func (c *channel) Close() error { return c.t.Close() }

// MeasurementLog implements attest.CommandChannelTPM20.
func (c *channel) MeasurementLog() ([]byte, error) {
	if c.logPath == "" {
		return nil, fmt.Errorf("no event log path for this TPM on %s", runtime.GOOS)
	}
	return os.ReadFile(c.logPath)
}

// startup sends TPM2_Startup(CLEAR); a TPM already started answers
// TPM_RC_INITIALIZE, which is fine.
func startup(t transport.TPM) error {
	_, err := tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(t)
	if err != nil && !errors.Is(err, tpm2.TPMRCInitialize) {
		return fmt.Errorf("TPM2_Startup: %w", err)
	}
	return nil
}

// flushStale flushes the transient objects and sessions left loaded in a
// TPM without a resource manager (swtpm, /dev/tpm0) by an earlier process
// that did not close them: a TPM holds only a few, and go-attestation keeps
// its EK and SRK persistent, so nothing else of ours is transient. Behind a
// resource manager (/dev/tpmrm0) the list is empty.
func flushStale(t transport.TPM) error {
	for _, first := range []tpm2.TPMHandle{0x80000000, 0x02000000} { // TPM_HT_TRANSIENT, TPM_HT_LOADED_SESSION
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(first), PropertyCount: 64}.Execute(t)
		if err != nil {
			return fmt.Errorf("list handles: %w", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return fmt.Errorf("list handles: %w", err)
		}
		for _, h := range hs.Handle {
			if h>>24 != first>>24 {
				continue
			}
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t); err != nil {
				return fmt.Errorf("flush handle 0x%08x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

// splitHostPort is net.SplitHostPort that also wants both parts.
func splitHostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err == nil && (host == "" || port == "") {
		err = errors.New("missing host or port")
	}
	return host, port, err
}
