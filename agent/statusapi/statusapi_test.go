//go:build unix

package statusapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent/statusapi"
)

// socketPath returns a socket path short enough for sun_path (~104 bytes),
// which t.TempDir() under a long test name may exceed.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "st")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return statusapi.SocketPath(dir)
}

// serve runs Serve until the test ends (or stop is called) and waits until
// it answers. The returned channel yields Serve's result.
func serve(t *testing.T, path string, status func() any) (stop func(), result <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- statusapi.Serve(ctx, path, status) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			errc <- err
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after cancel")
		}
	}
	t.Cleanup(stop)
	// Readiness: Serve has no ready signal, so ask until it answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := statusapi.Get(context.Background(), path)
		if err == nil {
			return stop, errc
		}
		select {
		case err := <-errc:
			t.Fatalf("Serve returned before answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Serve never answered: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServeGet(t *testing.T) {
	path := socketPath(t)
	var calls atomic.Int32
	serve(t, path, func() any {
		n := calls.Add(1)
		return map[string]any{"device_id": "dev-1", "calls": n}
	})
	before := calls.Load()
	b, err := statusapi.Get(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		DeviceID string `json:"device_id"`
		Calls    int32  `json:"calls"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	if got.DeviceID != "dev-1" || got.Calls != before+1 {
		t.Errorf("status = %+v, want dev-1 and a fresh call %d", got, before+1)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", st.Mode())
	}
}

func TestGetNotRunning(t *testing.T) {
	dir, err := os.MkdirTemp("", "st")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	stale := filepath.Join(dir, "stale.sock")
	lis, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	lis.Close()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"no socket":    filepath.Join(dir, "missing.sock"),
		"stale socket": stale,
		"regular file": regular,
	} {
		t.Run(name, func(t *testing.T) {
			b, err := statusapi.Get(context.Background(), path)
			if !errors.Is(err, statusapi.ErrNotRunning) {
				t.Errorf("Get = %q, %v; want ErrNotRunning", b, err)
			}
		})
	}
}

// A non-200 answer is an error, but not "not running".
func TestGetHTTPError(t *testing.T) {
	path := socketPath(t)
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	_, err = statusapi.Get(context.Background(), path)
	if err == nil || errors.Is(err, statusapi.ErrNotRunning) || !strings.Contains(err.Error(), "503") {
		t.Errorf("Get err = %v, want a 503 error", err)
	}
}

func TestServeReplacesStale(t *testing.T) {
	tests := []struct {
		name  string
		leave func(t *testing.T, path string)
	}{
		{name: "socket of a killed agent", leave: func(t *testing.T, path string) {
			lis, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			lis.(*net.UnixListener).SetUnlinkOnClose(false)
			lis.Close()
		}},
		{name: "regular file", leave: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := socketPath(t)
			tt.leave(t, path)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("nothing left at %s: %v", path, err)
			}
			serve(t, path, func() any { return "fresh" }) // fails the test unless it answers
			b, err := statusapi.Get(context.Background(), path)
			if err != nil || strings.TrimSpace(string(b)) != `"fresh"` {
				t.Errorf("Get = %q, %v", b, err)
			}
		})
	}
}

func TestServeRefusesSecondAgent(t *testing.T) {
	path := socketPath(t)
	serve(t, path, func() any { return "first" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := statusapi.Serve(ctx, path, func() any { return "second" })
	if err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Fatalf("second Serve = %v, want an error naming another agent", err)
	}
	// The first agent still answers on its socket.
	b, err := statusapi.Get(context.Background(), path)
	if err != nil || strings.TrimSpace(string(b)) != `"first"` {
		t.Errorf("Get after the refused Serve = %q, %v", b, err)
	}
}

func TestServeStops(t *testing.T) {
	path := socketPath(t)
	stop, result := serve(t, path, func() any { return 1 })
	stop()
	if err := <-result; err != nil {
		t.Errorf("Serve returned %v after cancel, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if _, err := statusapi.Get(context.Background(), path); !errors.Is(err, statusapi.ErrNotRunning) {
		t.Errorf("Get after stop: %v, want ErrNotRunning", err)
	}
}

func TestServeCancelledBeforeStart(t *testing.T) {
	path := socketPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errc := make(chan error, 1)
	go func() { errc <- statusapi.Serve(ctx, path, func() any { return 1 }) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve with a cancelled context did not return")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}
