package web_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/web/webtest"
)

var adminForm = regexp.MustCompile(`<form method="post" action="/admin/`)

// TestPagesFollowTheRole: an auditor is not shown admin forms the server
// would refuse (it used to be: four on a device page, a revoke button per
// credential); the page says it is read-only. An admin sees them.
func TestPagesFollowTheRole(t *testing.T) {
	e := newEnv(t, false)
	if _, err := e.st.CreateEnrollSecret(context.Background(), store.EnrollSecret{ID: "sec_r1", Hash: []byte("h"), Label: "jamf", CreatedAt: webtest.Now}), error(nil); err != nil {
		t.Fatal(err)
	}
	aud, adm := e.browser(), e.browser()
	aud.login(e.fleet.AuditorToken)
	adm.login(e.fleet.AdminToken)
	for _, page := range []string{"/devices/" + webtest.Alice, "/credentials"} {
		a := aud.get(page)
		if a.code != http.StatusOK {
			t.Fatalf("auditor GET %s = %d", page, a.code)
		}
		if n := len(adminForm.FindAllString(a.body, -1)); n != 0 {
			t.Errorf("auditor's %s shows %d admin forms", page, n)
		}
		if !strings.Contains(a.body, `id="read-only"`) || !strings.Contains(a.body, "Signed in as auditor") {
			t.Errorf("auditor's %s does not say it is read-only", page)
		}
		m := adm.get(page)
		if n := len(adminForm.FindAllString(m.body, -1)); m.code != http.StatusOK || n == 0 {
			t.Errorf("admin's %s: %d, %d admin forms; want them shown", page, m.code, n)
		}
		if strings.Contains(m.body, `id="read-only"`) {
			t.Errorf("admin's %s says it is read-only", page)
		}
	}
}

// TestEvidenceExcerptsCollapsed: every excerpt on a device page sits in a
// closed <details> (the page was thousands of pixels tall with each one
// open), with its length in the summary; no JavaScript is needed.
func TestEvidenceExcerptsCollapsed(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	r := b.get("/devices/" + webtest.Alice)
	pres := strings.Count(r.body, "<pre>")
	collapsed := regexp.MustCompile(`<details class="excerpt"><summary>excerpt \(\d+ lines?\)</summary><pre>`).FindAllString(r.body, -1)
	if r.code != http.StatusOK || pres == 0 || len(collapsed) != pres {
		t.Errorf("device page: %d excerpts, %d of them collapsed; want all", pres, len(collapsed))
	}
	if strings.Contains(r.body, "<details open") || strings.Contains(r.body, "<script") {
		t.Error("device page opens an excerpt or needs a script")
	}
}

// TestAuditLogPagedFilteredExported: the audit page pages through every
// entry (it showed the newest 200 and nothing older), filters by action,
// actor and dates, and exports what the filter selects as CSV and JSON;
// the export is audited; a bad filter is a 400 that says why.
func TestAuditLogPagedFilteredExported(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	for i := range 250 {
		actor, action := "tok_x (bob)", "login"
		if i%10 == 0 {
			actor, action = "=cmd|' /C calc'!A0 (tok_y)", "tpm-change.denied"
		}
		if _, err := e.st.AddAudit(ctx, store.AuditEntry{Time: webtest.Now.Add(time.Duration(i-250) * time.Hour), Actor: actor, Action: action, Detail: fmt.Sprintf("n=%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	rows := regexp.MustCompile(`<tr><td>[^<]*</td><td>`)
	older := regexp.MustCompile(`id="audit-older" href="|href="([^"]*)" id="audit-older"`)
	seen := map[string]bool{}
	page, pages := "/audit", 0
	for page != "" && pages < 10 {
		r := b.get(page)
		if r.code != http.StatusOK {
			t.Fatalf("GET %s = %d", page, r.code)
		}
		pages++
		for _, m := range regexp.MustCompile(`n=(\d+)<`).FindAllStringSubmatch(r.body, -1) {
			if seen[m[1]] {
				t.Errorf("entry n=%s on two pages", m[1])
			}
			seen[m[1]] = true
		}
		if n := len(rows.FindAllString(r.body, -1)); n > 100 {
			t.Errorf("page %d shows %d entries, want at most 100", pages, n)
		}
		page = ""
		if m := older.FindStringSubmatch(r.body); m != nil {
			page = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != 250 || pages != 3 {
		t.Errorf("paged through %d of 250 seeded entries in %d pages, want all in 3", len(seen), pages)
	}

	r := b.get("/audit?action=tpm-change&actor=TOK_Y&from=2026-03-25&to=2026-03-31")
	got := regexp.MustCompile(`n=(\d+)<`).FindAllStringSubmatch(r.body, -1)
	if r.code != http.StatusOK || len(got) == 0 {
		t.Fatalf("filtered page: %d, %d entries", r.code, len(got))
	}
	for _, m := range got {
		var n int
		fmt.Sscan(m[1], &n)
		at := webtest.Now.Add(time.Duration(n-250) * time.Hour)
		if n%10 != 0 || at.Before(time.Date(2026, 3, 25, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("filtered page shows n=%d (%s)", n, at)
		}
	}
	if len(got) != 15 {
		t.Errorf("filtered page: %d entries, want the 15 refused TPM changes of 03-25 to 03-31", len(got))
	}
	if !strings.Contains(r.body, `href="/audit.csv?action=tpm-change&amp;actor=TOK_Y&amp;from=2026-03-25&amp;to=2026-03-31"`) {
		t.Error("the CSV link does not carry the filter")
	}

	c := b.get("/audit.csv?action=tpm-change&actor=TOK_Y&from=2026-03-25&to=2026-03-31")
	recs, err := csv.NewReader(strings.NewReader(c.body)).ReadAll()
	if c.code != http.StatusOK || err != nil || len(recs) != 16 || strings.Join(recs[0], ",") != "id,time,actor,action,detail" {
		t.Fatalf("audit.csv: %d, %v, %d rows\n%s", c.code, err, len(recs), c.body)
	}
	if !strings.HasPrefix(recs[1][2], "'=") {
		t.Errorf("CSV actor %q: a formula must be made inert", recs[1][2])
	}
	if !strings.Contains(c.header.Get("Content-Disposition"), "attachment") {
		t.Errorf("audit.csv disposition %q", c.header.Get("Content-Disposition"))
	}
	j := b.get("/audit.json?actor=bob")
	var doc struct {
		Entries []struct {
			ID     int64  `json:"id"`
			Actor  string `json:"actor"`
			Action string `json:"action"`
		} `json:"entries"`
		Truncated bool `json:"truncated"`
	}
	if j.code != http.StatusOK || json.Unmarshal([]byte(j.body), &doc) != nil || len(doc.Entries) != 225 || doc.Truncated {
		t.Fatalf("audit.json?actor=bob: %d, %d entries (truncated %v)", j.code, len(doc.Entries), doc.Truncated)
	}
	for i := 1; i < len(doc.Entries); i++ {
		if doc.Entries[i].ID >= doc.Entries[i-1].ID || doc.Entries[i].Actor != "tok_x (bob)" {
			t.Fatalf("JSON entry %d = %+v: want bob's entries, newest first", i, doc.Entries[i])
		}
	}
	if ex := e.audit("export.audit"); len(ex) != 2 || !strings.Contains(ex[0].Detail, "format=json entries=225") {
		t.Errorf("export.audit entries = %+v, want the two exports audited", ex)
	}

	for _, bad := range []string{"/audit?from=yesterday", "/audit?from=2026-03-10&to=2026-03-01", "/audit?before=-4", "/audit?actor=" + strings.Repeat("a", 300),
		"/audit?to=9999-12-31", "/audit?from=1900-01-01"} {
		if r := b.get(bad); r.code != http.StatusBadRequest || !strings.Contains(r.body, `role="alert"`) {
			t.Errorf("GET %s = %d, want 400 with the reason", bad, r.code)
		}
	}
	if r := b.get("/audit.csv?to=never"); r.code != http.StatusBadRequest {
		t.Errorf("GET /audit.csv?to=never = %d, want 400", r.code)
	}
}

// TestDevicePageHardware: the device page names the machine as IT's
// inventory does: the serial number the server holds, and the vendor,
// model and console user of the newest osinfo report.
func TestDevicePageHardware(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	if r := b.get("/devices/" + webtest.Alice); !strings.Contains(r.body, "not reported") || strings.Contains(r.body, `id="hardware"`) {
		t.Errorf("device without a serial number or an osinfo report: the page should say none was reported")
	}
	if _, err := e.st.UpdateDeviceFacts(ctx, webtest.Alice, store.DeviceFacts{SerialNumber: "PF2ABC12"}); err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"hostname": "laptop-alice", "os": "linux", "serial_number": "PF2ABC12",
		"hardware_vendor": "LENOVO", "hardware_model": "ThinkPad X1 Carbon Gen 9 (20XW0055US)", "console_user": "alice"})
	if _, err := e.st.Ingest(ctx, webtest.Alice, []store.Observation{{Seq: 100, Collector: "osinfo", CollectedAt: webtest.Now.Add(-time.Minute),
		Status: "ok", ParserVersion: 3, Payload: payload}}, webtest.Now); err != nil {
		t.Fatal(err)
	}
	r := b.get("/devices/" + webtest.Alice)
	for _, want := range []string{`id="serial-number"><code>PF2ABC12</code>`, `id="hardware">LENOVO ThinkPad X1 Carbon Gen 9 (20XW0055US)`, `id="console-user">alice (as of 2026-03-31 11:59 UTC)`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("device page lacks %s", want)
		}
	}
}

// TestDevicePageRemediation: a failing control says how to fix it on the
// device's OS, from the policy; a passing one says nothing.
func TestDevicePageRemediation(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(e.fleet.AuditorToken)
	section := func(body, id string) string {
		m := regexp.MustCompile(`(?s)<section class="control" id="ctl-` + id + `">.*?</section>`).FindString(body)
		if m == "" {
			t.Fatalf("no section for %s", id)
		}
		return m
	}
	bob := section(b.get("/devices/"+webtest.Bob).body, "DC-FW-01")
	if !strings.Contains(bob, `<p class="fix"><strong>How to fix:</strong> Turn on the firewall: System Settings &gt; Network &gt; Firewall.</p>`) {
		t.Errorf("Bob's failing firewall (darwin) lacks the macOS fix:\n%s", bob)
	}
	if alice := section(b.get("/devices/"+webtest.Alice).body, "DC-FW-01"); strings.Contains(alice, "How to fix") {
		t.Errorf("Alice's passing firewall shows a fix:\n%s", alice)
	}
}
