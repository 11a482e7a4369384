package webui

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
	"github.com/evident-dev/evident/server/web/webtest"
)

func chromium(t *testing.T) string {
	t.Helper()
	const debian = "/usr/bin/chromium" // apt package chromium
	if fi, err := os.Stat(debian); err == nil && !fi.IsDir() {
		return debian
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found (/usr/bin/chromium or chromium in PATH): required under CI=true")
	}
	t.Skip("chromium not found (/usr/bin/chromium or chromium in PATH); install the chromium package to run")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile, for at most
// timeout; it is closed when the test ends.
func newBrowser(t *testing.T, exe string, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelBrowser)
	return bctx
}

type ui struct {
	t   *testing.T
	ctx context.Context
	url string
	dir string
}

func (u *ui) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	if err := chromedp.Do(u.ctx, steps...); err != nil {
		u.t.Fatalf("%s: %v", what, err)
	}
}

// text returns the page's visible text.
func (u *ui) text() string {
	u.t.Helper()
	s, err := chromedp.Run(u.ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		u.t.Fatalf("read page text: %v", err)
	}
	return s
}

func (u *ui) wantText(page string, want ...string) {
	u.t.Helper()
	got := u.text()
	for _, w := range want {
		if !strings.Contains(got, w) {
			u.t.Errorf("%s page: no %q in visible text:\n%s", page, w, got)
		}
	}
}

func (u *ui) screenshot(name string) {
	u.t.Helper()
	png, err := chromedp.Run(u.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		u.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(u.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		u.t.Fatal(err)
	}
	u.t.Logf("screenshot: %s (%d bytes)", p, len(png))
}

func TestAuditorInBrowser(t *testing.T) {
	exe := chromium(t)
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fleet := webtest.Seed(t, st)
	h, err := web.New(web.Config{Store: st, Policy: fleet.Policy, Now: func() time.Time { return webtest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	bctx := newBrowser(t, exe, 2*time.Minute)
	u := &ui{t: t, ctx: bctx, url: srv.URL, dir: t.ArtifactDir()}

	// Log in: the fleet page redirects to the login form; type the token.
	u.do("open the login page",
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
	)
	u.wantText("login", "Log in", "Token")
	u.screenshot("01-login")
	u.do("log in as auditor",
		chromedp.SendKeys(chromedp.ID("token"), fleet.AuditorToken),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("controls")),
	)

	// Fleet overview.
	u.wantText("fleet", "Fleet overview", "external-auditor", "auditor", "DC-FW-01", "DC-BOOT-01", "DC-AGENT-01",
		"Host firewall enabled, inbound default deny", "Compliance over the last 30 days", "all controls")
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("figure.chart polyline").length`)); err != nil || n < 2 {
		t.Errorf("fleet chart: %d polylines, %v; want overall and per-control lines", n, err)
	}
	u.screenshot("02-fleet")

	// Device list, filtered to failing firewalls.
	u.do("open the device list",
		chromedp.Navigate(srv.URL+"/devices?control=DC-FW-01&status=fail"),
		chromedp.WaitVisible(chromedp.ID("devices")),
	)
	u.wantText("devices", "macbook-bob", "1 shown of 3 devices", "fail")
	if strings.Contains(u.text(), "laptop-alice") {
		t.Errorf("device list filtered on DC-FW-01=fail shows laptop-alice")
	}
	u.screenshot("03-devices-failing-firewall")

	// Device detail.
	u.do("open a device",
		chromedp.Navigate(srv.URL+"/devices/"+webtest.Alice),
		chromedp.WaitVisible(chromedp.ID("device-controls")),
	)
	u.wantText("device", "laptop-alice", webtest.Alice, "DC-FW-01", "DC-BOOT-01", "DC-AGENT-01", "pass",
		"IPv4 inbound denied by default", "/usr/sbin/nft -j list ruleset", "Secure Boot enabled and enforcing")
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#device-controls svg rect").length`)); err != nil || n < 6 {
		t.Errorf("device timelines: %d rects, %v", n, err)
	}
	// Evidence excerpts are collapsed until their summary is clicked.
	if strings.Contains(u.text(), `"policy": "drop"`) {
		t.Error("device page: an evidence excerpt is shown before it is opened")
	}
	u.do("open an evidence excerpt",
		chromedp.Click(chromedp.CSS("#ctl-DC-FW-01 details.excerpt summary")),
		chromedp.WaitVisible(chromedp.CSS("#ctl-DC-FW-01 details.excerpt pre")),
	)
	u.wantText("device", `"policy": "drop"`)
	u.screenshot("04-device-laptop-alice")

	// Period report, and its CSV downloaded from the page's own link.
	u.do("open the period report",
		chromedp.Navigate(srv.URL+"/period?from=2026-03-01&to=2026-03-31&seed=7"),
		chromedp.WaitVisible(chromedp.CSS("main h1")),
	)
	txt := u.text()
	if strings.Contains(txt, "could not be built") {
		t.Fatalf("period report failed to build:\n%s", txt)
	}
	u.wantText("period", "Period report", "DC-FW-01", "Exceptions", "macbook-bob", "laptop-alice", "Sample (seed 7")
	u.screenshot("05-period")
	type download struct {
		Status      int    `json:"status"`
		Type        string `json:"type"`
		Disposition string `json:"disposition"`
		Body        string `json:"body"`
		Download    bool   `json:"download"`
	}
	dl, err := chromedp.Run(bctx, chromedp.Evaluate[download](`(async () => {
		const a = document.querySelector("a#csv");
		const r = await fetch(a.href);
		return {status: r.status, type: r.headers.get("content-type"), disposition: r.headers.get("content-disposition"),
			body: await r.text(), download: a.hasAttribute("download")};
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("download the CSV: %v", err)
	}
	if dl.Status != 200 || !strings.HasPrefix(dl.Type, "text/csv") || !strings.Contains(dl.Disposition, "attachment") || !dl.Download {
		t.Errorf("CSV download: status %d, type %q, disposition %q, download attr %v", dl.Status, dl.Type, dl.Disposition, dl.Download)
	}
	lines := strings.Split(strings.TrimSpace(dl.Body), "\n")
	if len(lines) < 2 || !strings.Contains(dl.Body, "macbook-bob") || !strings.Contains(dl.Body, "DC-FW-01") {
		t.Errorf("CSV: %d lines, want a header and exception rows for macbook-bob:\n%s", len(lines), dl.Body)
	}
	if err := os.WriteFile(filepath.Join(u.dir, "period.csv"), []byte(dl.Body), 0o644); err == nil {
		t.Logf("downloaded CSV: %s (%d lines)", filepath.Join(u.dir, "period.csv"), len(lines))
	}

	// An auditor is shown no admin form; one forged anyway is refused.
	u.do("open a device as auditor",
		chromedp.Navigate(srv.URL+"/devices/"+webtest.Bob),
		chromedp.WaitVisible(chromedp.ID("read-only")),
	)
	u.wantText("device", "this page is read-only")
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('form[action^="/admin/"]').length`)); err != nil || n != 0 {
		t.Errorf("auditor's device page: %d admin forms, %v", n, err)
	}
	type post struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	forge := func(action string, fields map[string]string) post {
		t.Helper()
		b, _ := json.Marshal(fields)
		p, err := chromedp.Run(bctx, chromedp.Evaluate[post](`(async () => {
			const f = new URLSearchParams(`+string(b)+`);
			f.set("csrf", document.querySelector('input[name="csrf"]').value);
			const r = await fetch("`+action+`", {method: "POST", body: f});
			return {status: r.status, body: await r.text()};
		})()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("POST %s: %v", action, err)
		}
		return p
	}
	if p := forge("/admin/tpm-change", map[string]string{"device_id": webtest.Bob, "hours": "24"}); p.Status != 403 || !strings.Contains(p.Body, "requires the admin role") {
		t.Errorf("forged TPM change as auditor: %d\n%s", p.Status, p.Body)
	}
	if err := st.TakeTPMChangeAllowance(context.Background(), webtest.Bob, webtest.Now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused admin action left an allowance: %v", err)
	}
	if p := forge("/admin/waiver", map[string]string{"device_id": webtest.Bob, "reason": "auditor trying to waive", "approver": "nobody", "expires": "2026-04-15"}); p.Status != 403 {
		t.Errorf("forged waiver as auditor: %d\n%s", p.Status, p.Body)
	}
	if ws, err := st.ListWaivers(context.Background()); err != nil || len(ws) != 0 {
		t.Errorf("the auditor's waiver was stored: %+v, %v", ws, err)
	}
	log, err := st.AuditLog(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var denied, login, waiverDenied bool
	for _, e := range log {
		waiverDenied = waiverDenied || (e.Action == "waiver.denied" && strings.Contains(e.Actor, "external-auditor"))
		denied = denied || (e.Action == "tpm-change.denied" && strings.Contains(e.Actor, "external-auditor") && strings.Contains(e.Detail, webtest.Bob))
		login = login || (e.Action == "login" && strings.Contains(e.Actor, "external-auditor"))
	}
	if !denied || !login || !waiverDenied {
		t.Errorf("audit log lacks the login (%v) or a refused action (TPM change %v, waiver %v): %+v", login, denied, waiverDenied, log)
	}

	// The audit page shows it; logging out ends the session.
	u.do("open the audit log",
		chromedp.Navigate(srv.URL+"/audit"),
		chromedp.WaitVisible(chromedp.ID("audit")),
	)
	u.wantText("audit", "tpm-change.denied", "login", "export.period")
	u.screenshot("07-audit-log")
	u.do("log out",
		chromedp.Click(chromedp.CSS("header form button")),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.Navigate(srv.URL+"/devices"),
		chromedp.WaitVisible(chromedp.ID("token")),
	)
}
