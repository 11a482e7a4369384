package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/webhook"
)

// TestWebhooksEndToEnd: a server configured from a server.yaml with a
// webhook, a real agent reporting this machine twice: the receiver gets
// exactly one signed notification per control interval that is fail or
// unknown (each transition), correct against what the server stored, and
// the first refused delivery is retried.
func TestWebhooksEndToEnd(t *testing.T) {
	secret := "e2e-webhook-secret-0123456789"
	var mu sync.Mutex
	var got []webhook.Message
	refused := 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte(secret), r.Header.Get(webhook.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("delivery %s: %v", r.Header.Get("X-Evident-Delivery"), err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if refused == 0 {
			refused++ // the first delivery is refused: it must come again
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m webhook.Message
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		got = append(got, m)
	}))
	defer rcv.Close()

	root := t.TempDir()
	srvDir, agentDir := filepath.Join(root, "server"), filepath.Join(root, "agent")
	if err := os.MkdirAll(srvDir, 0o700); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(root, "hook.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "server.yaml")
	yaml := fmt.Sprintf(`# as an admin writes it
rescore_interval: 1h
public_url: https://evident.example.com
webhook_interval: 100ms
webhook_retry_base: 200ms
webhooks:
  - name: ops
    url: %s/hook
    secret_file: %s
    events: [control.fail, control.unknown]
`, rcv.URL, secretFile)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServerEnv(t, nil, srvDir, "127.0.0.1:0", "--config", conf)
	device := enroll(t, srv, agentDir, srv.token(t))
	for range 2 {
		if out, e, err := run(t, nil, agentBin, "run", "--once", "--data-dir", agentDir); err != nil {
			t.Fatalf("run --once: %v\n%s%s", err, out, e)
		}
	}
	// What the server stored: every interval that is fail or unknown.
	st, err := sqlite.Open(filepath.Join(srvDir, "evident.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hist, err := st.StateHistory(context.Background(), device)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range hist {
		if s.Status == store.Fail || s.Status == store.Unknown {
			want = append(want, s.ControlID+" "+s.Status)
		}
	}
	if len(want) == 0 {
		t.Fatal("no control of this machine is fail or unknown: nothing to notify (the test needs one)")
	}
	sort.Strings(want)
	waitFor(t, "a notification per transition", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(want)
	})
	time.Sleep(time.Second) // rounds enough for a duplicate to show
	srv.p.stop(t)
	mu.Lock()
	defer mu.Unlock()
	var have []string
	ids := map[int64]bool{}
	for _, m := range got {
		have = append(have, m.Control.ID+" "+m.Control.Status)
		if ids[m.ID] {
			t.Errorf("alert %d delivered twice", m.ID)
		}
		ids[m.ID] = true
		if m.Device == nil || m.Device.ID != device || m.URL != "https://evident.example.com/devices/"+device || m.Control.Title == "" || m.Control.Reason == "" {
			t.Errorf("notification %+v", m)
		}
	}
	sort.Strings(have)
	if strings.Join(have, "\n") != strings.Join(want, "\n") {
		t.Errorf("notifications:\n%s\nwant one per stored fail/unknown interval:\n%s", strings.Join(have, "\n"), strings.Join(want, "\n"))
	}
	if refused != 1 {
		t.Errorf("refused %d deliveries, want 1", refused)
	}
	retried := false
	for _, m := range got {
		retried = retried || m.Attempt == 2
	}
	if !retried {
		t.Error("no delivery came as a second attempt after the refusal")
	}
}
