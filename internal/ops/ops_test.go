package ops

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestReadiness: /readyz answers 503 with the reason while the check fails,
// 200 once it passes; /healthz answers whatever readiness says.
func TestReadiness(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var notReady error = errors.New("store unreachable")
	stop := Serve(context.Background(), lis, NewRegistry("test", "v0"), func(context.Context) error { return notReady }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer stop()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + lis.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		path     string
		ready    error
		wantCode int
		want     string
	}{
		{"/readyz", errors.New("store unreachable"), http.StatusServiceUnavailable, "not ready: store unreachable"},
		{"/healthz", errors.New("store unreachable"), http.StatusOK, "ok"},
		{"/readyz", nil, http.StatusOK, "ready"},
		{"/metrics", nil, http.StatusOK, `evident_build_info{binary="test",version="v0"} 1`},
		{"/nope", nil, http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		notReady = tt.ready
		code, body := get(tt.path)
		if code != tt.wantCode || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s (ready: %v) = %d %q; want %d containing %q", tt.path, tt.ready, code, body, tt.wantCode, tt.want)
		}
	}
}
