package webui

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/collectors/all"
	"github.com/evident-dev/evident/internal/enrolltoken"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/ingest/ingesttest"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
)

// TestCollectNowInBrowser: an admin presses "Collect now" on a device's
// page in a real browser; the server (real gRPC over loopback mTLS, SQLite
// on disk) passes the request to the device's live stream and a real agent,
// enrolled through the Enrollment RPC and collecting only once an hour,
// collects at once: a new observation is on the page within 10 seconds.
func TestCollectNowInBrowser(t *testing.T) {
	exe := chromium(t)
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(filepath.Join(dir, "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pol := controls.Default()
	srv := ingesttest.Start(t, &ingest.Server{Store: st, Policy: pol, Log: logger})
	go srv.WatchCommands(ctx, 0)
	ca := srv.CA

	secret := enrolltoken.NewSecret()
	if err := st.CreateEnrollSecret(ctx, store.EnrollSecret{ID: "sec_ui", Hash: enrolltoken.HashSecret(secret), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	agentDir := t.TempDir()
	id, err := identity.Enroll(ctx, identity.Dir(agentDir), srv.Addr, enrolltoken.Token{Secret: secret, CAPin: ca.Fingerprint()}.String(),
		&identity.HostFacts{Hostname: "collect-me", Goos: "linux"}, identity.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var osinfo []collectors.Collector
	for _, c := range all.Default() {
		if c.Name() == "osinfo" {
			osinfo = append(osinfo, c)
		}
	}
	reg, err := collectors.NewRegistry(osinfo...)
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agent.Open(agent.Config{DataDir: agentDir, Interval: time.Hour, Log: logger, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(ctx, false, 0) }()
	defer func() { cancel(); <-agentDone; ag.Close() }()
	lastSeq := func() uint64 {
		c, err := st.Counts(context.Background(), id.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		return c.MaxSeq
	}
	deadline := time.Now().Add(30 * time.Second)
	for lastSeq() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent's first collection never arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}

	tok, tokID, hash := web.NewToken()
	if err := st.CreateToken(ctx, store.Token{ID: tokID, Hash: hash, Role: store.RoleAdmin, Label: "it-admin", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	h, err := web.New(web.Config{Store: st, Policy: pol, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()

	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	u := &ui{t: t, ctx: bctx, url: hs.URL, dir: t.ArtifactDir()}
	page := hs.URL + "/devices/" + id.DeviceID
	u.do("log in as admin",
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), tok),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("collect-now")),
	)
	u.wantText("device", "collect-me", "Certificate", "valid until")
	shown := func() uint64 {
		s, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector("#evidence-count").dataset.lastSeq`))
		if err != nil {
			t.Fatalf("read the page's last seq: %v", err)
		}
		n, _ := strconv.ParseUint(s, 10, 64)
		return n
	}
	before := shown()
	if before == 0 || before != lastSeq() {
		t.Fatalf("the page shows last seq %d; the store has %d", before, lastSeq())
	}
	pressed := time.Now()
	u.do("press Collect now",
		chromedp.Click(chromedp.ID("collect-now")),
		chromedp.WaitVisible(chromedp.CSS("p.notice")),
	)
	u.wantText("after the request", "Collect-now request sent")
	u.screenshot("collect-now")
	for shown() <= before {
		if time.Since(pressed) > 10*time.Second {
			t.Fatalf("no new observation on the page within 10 s of pressing Collect now (last seq %d, store %d)", shown(), lastSeq())
		}
		time.Sleep(200 * time.Millisecond)
		u.do("reload", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.ID("evidence-count")))
	}
	t.Logf("new observation on the page %s after pressing Collect now (seq %d -> %d)", time.Since(pressed).Round(time.Millisecond), before, shown())
	log, err := st.AuditLog(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range log {
		found = found || e.Action == "device.collect"
	}
	if !found {
		t.Errorf("no device.collect audit entry: %+v", log)
	}
}
