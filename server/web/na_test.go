package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
	"github.com/evident-dev/evident/server/web/webtest"
)

// TestNoDeviceInScopeIsNotAPercentage: a control no device is in scope of
// reads "n/a" on the period page and the fleet page, never "0.0%" (which
// says every device failed it); a control in scope keeps its percentage.
func TestNoDeviceInScopeIsNotAPercentage(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := controls.Parse([]byte(`{"version": 2, "name": "scope test", "controls": [
	  {"id": "C-ENC", "title": "Disk encryption", "criteria": ["CC6.1"], "check": "agent_fresh", "max_age": "24h"},
	  {"id": "C-KIOSK", "title": "Kiosk lockdown", "criteria": ["CC6.1"], "check": "agent_fresh", "max_age": "24h"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	start := webtest.Now.Add(-40 * 24 * time.Hour)
	for _, id := range []string{"dev_a", "dev_b"} {
		if _, err := st.EnrollDevice(ctx, store.Device{ID: id, Hostname: "host-" + id, GOOS: "linux", EnrolledAt: start}); err != nil {
			t.Fatal(err)
		}
		for _, s := range []store.ControlState{{ControlID: "C-ENC", Status: store.Pass, Reason: "LUKS on", EvidenceSeq: 1},
			{ControlID: "C-KIOSK", Status: store.NotApplicable, Reason: "not a kiosk", EvidenceSeq: 1}} {
			s.Evidence = json.RawMessage(`{}`)
			if err := states.Record(ctx, st, id, []store.ControlState{s}, nil, start); err != nil {
				t.Fatal(err)
			}
		}
	}
	tok, id, hash := web.NewToken()
	if err := st.CreateToken(ctx, store.Token{ID: id, Hash: hash, Role: store.RoleAuditor, Label: "auditor", CreatedAt: start}); err != nil {
		t.Fatal(err)
	}
	h, err := web.New(web.Config{Store: st, Policy: p, Now: func() time.Time { return webtest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := (&env{t: t, st: st, srv: srv, clock: &clock{t: webtest.Now}}).browser()
	b.login(tok)

	row := func(page, control string) string {
		t.Helper()
		m := regexp.MustCompile(`(?s)<tr>\s*<td>(?:<a [^>]*>)?<code>` + control + `</code>.*?</tr>`).FindString(page)
		if m == "" {
			t.Fatalf("no row for %s in\n%s", control, page)
		}
		return m
	}
	per := b.get("/period?from=2026-03-01&to=2026-03-31")
	if per.code != http.StatusOK {
		t.Fatalf("period page: %d", per.code)
	}
	if r := row(per.body, "C-KIOSK"); !strings.Contains(r, "n/a, no device in scope") || strings.Contains(r, "%") {
		t.Errorf("period row %s: want n/a, no device in scope, and no percentage", r)
	}
	if r := row(per.body, "C-ENC"); !strings.Contains(r, "100.0%") {
		t.Errorf("period row %s: want 100.0%%", r)
	}
	fleet := b.get("/")
	if fleet.code != http.StatusOK {
		t.Fatalf("fleet page: %d", fleet.code)
	}
	if r := row(fleet.body, "C-KIOSK"); !strings.Contains(r, "n/a") || strings.Contains(r, "%") {
		t.Errorf("fleet row %s: want n/a and no percentage", r)
	}
}
