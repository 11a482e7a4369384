package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/webhook"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// receiver is a real HTTP endpoint on loopback that records what it is
// sent and answers each request with the next of its codes (then 200).
type receiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	codes []int
	got   []delivery
}

type delivery struct {
	header http.Header
	body   []byte
	code   int
}

func newReceiver(t testing.TB, codes ...int) *receiver {
	r := &receiver{codes: codes}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		code := http.StatusOK
		if len(r.codes) > 0 {
			code, r.codes = r.codes[0], r.codes[1:]
		}
		r.got = append(r.got, delivery{req.Header.Clone(), body, code})
		r.mu.Unlock()
		if code == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// accepted is what the receiver answered 2xx to.
func (r *receiver) accepted() []delivery {
	var out []delivery
	for _, d := range r.deliveries() {
		if d.code/100 == 2 {
			out = append(out, d)
		}
	}
	return out
}

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.EnableAlerts()
	for _, d := range []store.Device{
		{ID: "dev-1", Hostname: "LAPTOP-7F3K", SerialNumber: "C02XK1ZJJG5H", GOOS: "darwin", MachineID: "m1", EnrolledAt: t0},
		{ID: "dev-2", Hostname: "LAPTOP-7F3K", SerialNumber: "5CD1234XYZ", GOOS: "windows", MachineID: "m2", EnrolledAt: t0},
	} {
		if _, err := st.EnrollDevice(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func record(t *testing.T, st store.Store, dev string, at time.Time, groups []string, statuses ...string) {
	t.Helper()
	var next []store.ControlState
	for i := 0; i < len(statuses); i += 2 {
		next = append(next, store.ControlState{ControlID: statuses[i], Status: statuses[i+1], Reason: statuses[i] + " is " + statuses[i+1] + " here"})
	}
	if err := states.Record(context.Background(), st, dev, next, groups, at); err != nil {
		t.Fatal(err)
	}
}

var secret = []byte("0123456789abcdef0123456789abcdef")

func dispatcher(t *testing.T, st webhook.Store, cfg webhook.Config) *webhook.Dispatcher {
	t.Helper()
	if cfg.RetryBase == 0 {
		cfg.RetryBase = time.Minute
	}
	cfg.Titles = map[string]string{"DC-FW-01": "Host firewall"}
	cfg.WebURL = "https://evident.example.com/"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return webhook.New(st, cfg)
}

func round(t *testing.T, d *webhook.Dispatcher, at time.Time) int {
	t.Helper()
	n, err := d.Round(context.Background(), at)
	if err != nil {
		t.Fatalf("Round(%s): %v", at, err)
	}
	return n
}

func decode(t *testing.T, d delivery) webhook.Message {
	t.Helper()
	var m webhook.Message
	if err := json.Unmarshal(d.body, &m); err != nil {
		t.Fatalf("body %q: %v", d.body, err)
	}
	return m
}

func audits(t *testing.T, st store.Store, action string) []store.AuditEntry {
	t.Helper()
	all, err := st.AuditQuery(context.Background(), store.AuditQuery{Action: action, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// One signed, correct notification per transition, none for a status that
// holds or improves.
func TestOnePerTransition(t *testing.T) {
	st := openStore(t)
	rcv := newReceiver(t)
	d := dispatcher(t, st, webhook.Config{Endpoints: []webhook.Endpoint{{Name: "ops", URL: rcv.srv.URL, Secret: secret}}})
	steps := []struct {
		fw, disk string
		want     []string // events sent after the step
	}{
		{store.Pass, store.Pass, nil},
		{store.Fail, store.Pass, []string{"control.fail DC-FW-01 pass"}},
		{store.Fail, store.Pass, nil}, // confirmed: no second notification
		{store.Fail, store.Unknown, []string{"control.unknown DC-DISK-01 pass"}},
		{store.Pass, store.Pass, nil}, // recoveries are not alerts
		{store.Unknown, store.Fail, []string{"control.unknown DC-FW-01 pass", "control.fail DC-DISK-01 pass"}},
		{store.Fail, store.Fail, []string{"control.fail DC-FW-01 unknown"}},
	}
	seen := 0
	for i, s := range steps {
		at := t0.Add(time.Duration(i) * time.Hour)
		record(t, st, "dev-1", at, nil, "DC-FW-01", s.fw, "DC-DISK-01", s.disk)
		round(t, d, at)
		round(t, d, at.Add(time.Minute)) // a second round sends nothing more
		got := rcv.deliveries()[seen:]
		seen += len(got)
		if len(got) != len(s.want) {
			t.Fatalf("step %d: %d notifications, want %v", i, len(got), s.want)
		}
		for j, dl := range got {
			m := decode(t, dl)
			if desc := m.Event + " " + m.Control.ID + " " + m.Control.Previous; desc != s.want[j] {
				t.Errorf("step %d: notification %q, want %q", i, desc, s.want[j])
			}
			if err := webhook.Verify(secret, dl.header.Get(webhook.SignatureHeader), dl.body, at, 5*time.Minute); err != nil {
				t.Errorf("step %d: %v", i, err)
			}
			if dl.header.Get("X-Evident-Event") != m.Event || dl.header.Get("X-Evident-Delivery") == "" || dl.header.Get("Content-Type") != "application/json" {
				t.Errorf("step %d: headers %v", i, dl.header)
			}
			if m.Device == nil || m.Device.ID != "dev-1" || m.Device.Hostname != "LAPTOP-7F3K" || m.Device.SerialNumber != "C02XK1ZJJG5H" || m.Device.OS != "darwin" {
				t.Errorf("step %d: device %+v", i, m.Device)
			}
			if m.Control.Reason != m.Control.ID+" is "+m.Control.Status+" here" || m.Attempt != 1 || !m.CreatedAt.Equal(at) {
				t.Errorf("step %d: %+v", i, m)
			}
			if m.URL != "https://evident.example.com/devices/dev-1" {
				t.Errorf("step %d: url %q", i, m.URL)
			}
		}
	}
	first := decode(t, rcv.deliveries()[0])
	if first.Control.Title != "Host firewall" || first.Text != "Evident: DC-FW-01 (Host firewall) is FAIL on LAPTOP-7F3K (was PASS): DC-FW-01 is fail here https://evident.example.com/devices/dev-1" {
		t.Errorf("first message: %+v", first)
	}
	if n := len(audits(t, st, "webhook.delivered")); n != seen {
		t.Errorf("%d deliveries audited, want %d", n, seen)
	}
}

// A receiver that fails gets the same alert again after the back-off, and
// nothing more once it accepted it; an endpoint that accepted is not sent
// it again while another is retried.
func TestRetries(t *testing.T) {
	st := openStore(t)
	flaky := newReceiver(t, http.StatusInternalServerError, http.StatusServiceUnavailable)
	steady := newReceiver(t)
	d := dispatcher(t, st, webhook.Config{RetryBase: time.Minute, Endpoints: []webhook.Endpoint{
		{Name: "flaky", URL: flaky.srv.URL, Secret: secret},
		{Name: "steady", URL: steady.srv.URL, Secret: []byte("another secret")},
	}})
	record(t, st, "dev-2", t0, nil, "DC-FW-01", store.Fail)
	rounds := []struct {
		after         time.Duration
		flaky, steady int // requests each has had
		done          int
	}{
		{0, 1, 1, 0},                // flaky answers 500
		{30 * time.Second, 1, 1, 0}, // not due before the first back-off (1 min)
		{time.Minute, 2, 1, 0},      // 503; the next wait is 2 min
		{2 * time.Minute, 2, 1, 0},  // 1 min later: not due
		{3 * time.Minute, 3, 1, 1},  // accepted
		{time.Hour, 3, 1, 0},        // nothing left
	}
	for i, r := range rounds {
		done := round(t, d, t0.Add(r.after))
		if f, s := len(flaky.deliveries()), len(steady.deliveries()); f != r.flaky || s != r.steady || done != r.done {
			t.Fatalf("round %d (+%s): flaky %d, steady %d requests, %d done; want %d, %d, %d", i, r.after, f, s, done, r.flaky, r.steady, r.done)
		}
	}
	all := flaky.deliveries()
	for i, dl := range all {
		if dl.header.Get("X-Evident-Delivery") != all[0].header.Get("X-Evident-Delivery") {
			t.Errorf("retry %d carries another delivery id", i)
		}
		if m := decode(t, dl); m.Attempt != i+1 {
			t.Errorf("retry %d: attempt %d", i, m.Attempt)
		}
	}
	if err := webhook.Verify([]byte("another secret"), steady.deliveries()[0].header.Get(webhook.SignatureHeader), steady.deliveries()[0].body, t0, time.Minute); err != nil {
		t.Errorf("steady's signature: %v", err)
	}
	if len(flaky.accepted()) != 1 || len(steady.accepted()) != 1 {
		t.Errorf("accepted: flaky %d, steady %d; want one each", len(flaky.accepted()), len(steady.accepted()))
	}
	if n := len(audits(t, st, "webhook.delivered")); n != 2 {
		t.Errorf("%d deliveries audited, want 2", n)
	}
}

// A receiver that keeps failing (or redirects, or is not there) is given
// up after MaxAttempts, and the give-up is audited with why.
func TestGivesUp(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  func(t *testing.T) string
		why  string
	}{
		{"server error", func(t *testing.T) string {
			return newReceiver(t, 500, 500, 500, 500).srv.URL
		}, "answered 500"},
		{"redirect", func(t *testing.T) string { return newReceiver(t, 302, 302, 302).srv.URL }, "answered 302"},
		{"nobody listening", func(t *testing.T) string {
			r := newReceiver(t)
			u := r.srv.URL
			r.srv.Close()
			return u + "/hook?token=s3cret"
		}, "connect"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			d := dispatcher(t, st, webhook.Config{RetryBase: time.Second, MaxAttempts: 3, Endpoints: []webhook.Endpoint{{Name: "x", URL: tt.url(t)}}})
			record(t, st, "dev-1", t0, nil, "DC-FW-01", store.Unknown)
			var done int
			for i := range 10 {
				done += round(t, d, t0.Add(time.Duration(i)*time.Minute))
			}
			failed := audits(t, st, "webhook.failed")
			if done != 1 || len(failed) != 1 || !strings.Contains(failed[0].Detail, "attempts=3") || !strings.Contains(failed[0].Detail, tt.why) {
				t.Fatalf("done %d, audited %+v; want one give-up after 3 attempts saying %q", done, failed, tt.why)
			}
			if strings.Contains(failed[0].Detail, "s3cret") {
				t.Errorf("the URL's token reached the audit log: %s", failed[0].Detail)
			}
		})
	}
}

// Slack is sent a text; an endpoint only gets the events it chose; a
// group crossing its threshold notifies once each way.
func TestFormatsEventsAndGroups(t *testing.T) {
	st := openStore(t)
	slack := newReceiver(t)
	groupsOnly := newReceiver(t)
	d := dispatcher(t, st, webhook.Config{
		Endpoints: []webhook.Endpoint{
			{Name: "slack", URL: slack.srv.URL, Format: webhook.FormatSlack},
			{Name: "managers", URL: groupsOnly.srv.URL, Events: []string{"group.below", "group.recovered"}},
		},
		Thresholds: []webhook.Threshold{{Group: "laptops", MinCompliant: 75}},
	})
	record(t, st, "dev-1", t0, []string{"laptops"}, "DC-FW-01", store.Pass)
	record(t, st, "dev-2", t0, []string{"laptops"}, "DC-FW-01", store.Pass)
	round(t, d, t0)
	record(t, st, "dev-2", t0.Add(time.Hour), []string{"laptops"}, "DC-FW-01", store.Fail) // 1 of 2: below 75%
	round(t, d, t0.Add(time.Hour))
	round(t, d, t0.Add(2*time.Hour)) // still below: nothing new
	record(t, st, "dev-2", t0.Add(3*time.Hour), []string{"laptops"}, "DC-FW-01", store.Pass)
	round(t, d, t0.Add(3*time.Hour))

	var texts []string
	for _, dl := range slack.deliveries() {
		var m map[string]any
		if err := json.Unmarshal(dl.body, &m); err != nil || len(m) != 1 {
			t.Fatalf("slack body %s: %v", dl.body, err)
		}
		texts = append(texts, m["text"].(string))
		if dl.header.Get(webhook.SignatureHeader) != "" {
			t.Error("an endpoint without a secret was sent a signature")
		}
	}
	want := []string{
		"Evident: DC-FW-01 (Host firewall) is FAIL on LAPTOP-7F3K (was PASS): DC-FW-01 is fail here https://evident.example.com/devices/dev-2",
		"Evident: group laptops is below its compliance threshold: 1 of 2 devices compliant (50.0%), threshold 75%",
		"Evident: group laptops meets its compliance threshold again: 2 of 2 devices compliant (100.0%), threshold 75%",
	}
	if strings.Join(texts, "\n") != strings.Join(want, "\n") {
		t.Errorf("slack got\n%s\nwant\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
	var events []string
	for _, dl := range groupsOnly.deliveries() {
		m := decode(t, dl)
		events = append(events, m.Event+" "+m.Group.Name)
	}
	if strings.Join(events, ",") != "group.below laptops,group.recovered laptops" {
		t.Errorf("the group-only endpoint got %v", events)
	}
}

// Two replicas running the dispatcher on one store: the alerts lease lets
// one deliver, so the receiver gets each alert once.
func TestReplicasDeliverOnce(t *testing.T) {
	st := openStore(t)
	rcv := newReceiver(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, holder := range []string{"replica-a", "replica-b"} {
		d := dispatcher(t, st, webhook.Config{Every: 10 * time.Millisecond, Endpoints: []webhook.Endpoint{{Name: "ops", URL: rcv.srv.URL}}})
		wg.Add(1)
		go func() { defer wg.Done(); d.Run(ctx, holder) }()
	}
	now := time.Now()
	for i := range 5 {
		record(t, st, "dev-1", now.Add(time.Duration(i)*time.Millisecond), nil, "DC-FW-01", []string{store.Fail, store.Pass}[i%2])
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rcv.deliveries()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // ten more rounds of each replica
	cancel()
	wg.Wait()
	ids := map[string]int{}
	for _, dl := range rcv.deliveries() {
		ids[dl.header.Get("X-Evident-Delivery")]++
	}
	if len(ids) != 3 || len(rcv.deliveries()) != 3 {
		t.Errorf("deliveries by id %v, want 3 alerts once each", ids)
	}
}

func TestValidate(t *testing.T) {
	ok := webhook.Endpoint{Name: "a", URL: "https://hooks.example.com/x"}
	for _, tt := range []struct {
		name string
		cfg  webhook.Config
		want string
	}{
		{"no name", webhook.Config{Endpoints: []webhook.Endpoint{{URL: ok.URL}}}, "no name"},
		{"repeated name", webhook.Config{Endpoints: []webhook.Endpoint{ok, ok}}, "unique"},
		{"comma in name", webhook.Config{Endpoints: []webhook.Endpoint{{Name: "a,b", URL: ok.URL}}}, "no comma"},
		{"not http", webhook.Config{Endpoints: []webhook.Endpoint{{Name: "a", URL: "ftp://x/y"}}}, "not an http(s) URL"},
		{"no host", webhook.Config{Endpoints: []webhook.Endpoint{{Name: "a", URL: "https:///x"}}}, "not an http(s) URL"},
		{"format", webhook.Config{Endpoints: []webhook.Endpoint{{Name: "a", URL: ok.URL, Format: "teams"}}}, `format "teams"`},
		{"event", webhook.Config{Endpoints: []webhook.Endpoint{{Name: "a", URL: ok.URL, Events: []string{"control.pass"}}}}, `event "control.pass"`},
		{"threshold 0", webhook.Config{Thresholds: []webhook.Threshold{{Group: "g"}}}, "min_compliant_percent"},
		{"threshold over 100", webhook.Config{Thresholds: []webhook.Threshold{{Group: "g", MinCompliant: 101}}}, "min_compliant_percent"},
		{"repeated group", webhook.Config{Thresholds: []webhook.Threshold{{Group: "g", MinCompliant: 9}, {Group: "g", MinCompliant: 9}}}, "repeated"},
		{"valid", webhook.Config{Endpoints: []webhook.Endpoint{ok}, Thresholds: []webhook.Threshold{{Group: "g", MinCompliant: 90}}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg.Endpoints[0].Format != webhook.FormatJSON || tt.cfg.Every != webhook.DefaultEvery || tt.cfg.MaxAttempts != webhook.DefaultMaxAttempts {
					t.Errorf("defaults not filled: %+v", tt.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"id":1}`)
	good := webhook.Sign(secret, t0, body)
	for _, tt := range []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   string
	}{
		{"good", secret, good, body, t0.Add(time.Minute), ""},
		{"tampered body", secret, good, []byte(`{"id":2}`), t0, "does not match"},
		{"wrong secret", []byte("x"), good, body, t0, "does not match"},
		{"replayed later", secret, good, body, t0.Add(time.Hour), "outside"},
		{"from the future", secret, good, body, t0.Add(-time.Hour), "outside"},
		{"no timestamp", secret, "v1=00", body, t0, "no timestamp"},
		{"no signature", secret, "t=1", body, t0, "no v1"},
		{"short signature", secret, "t=1,v1=abcd", body, t0, "no v1"},
		{"empty", secret, "", body, t0, "no timestamp"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(tt.secret, tt.header, tt.body, tt.now, 5*time.Minute)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Verify = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(webhook.Sign(secret, t0, []byte("x")), []byte("x"))
	f.Add("t=,v1=", []byte(""))
	f.Add("t=99999999999999999999,v1=zz", []byte("{}"))
	f.Add(" v1=00 , t=1772442000 ", []byte("{}"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		if webhook.Verify(secret, header, body, t0, time.Minute) != nil {
			return
		}
		// What verifies is bound to its body: one byte more does not.
		if webhook.Verify(secret, header, append(body, 'x'), t0, time.Minute) == nil {
			t.Fatalf("%q verifies two bodies", header)
		}
	})
}

// A round slower than the lease (a receiver that hangs) must not let a
// second replica send the same alerts: each is claimed before it is sent.
func TestConcurrentRoundsClaim(t *testing.T) {
	st := openStore(t)
	var mu sync.Mutex
	seen := map[string]int{}
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		seen[r.Header.Get("X-Evident-Delivery")]++
		mu.Unlock()
	}))
	defer slow.Close()
	for i := range 6 {
		record(t, st, "dev-1", t0.Add(time.Duration(i)*time.Second), nil, "DC-FW-01", []string{store.Fail, store.Pass}[i%2])
	}
	var wg sync.WaitGroup
	for range 2 {
		d := dispatcher(t, st, webhook.Config{Endpoints: []webhook.Endpoint{{Name: "ops", URL: slow.URL}}})
		wg.Add(1)
		go func() { defer wg.Done(); round(t, d, t0.Add(time.Minute)) }()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Errorf("%d alerts delivered, want 3: %v", len(seen), seen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("alert %s delivered %d times by two concurrent rounds", id, n)
		}
	}
}

// Text from a device (its hostname, a reason) cannot become a Slack
// mention or link.
func TestSlackEscapesDeviceText(t *testing.T) {
	st := openStore(t)
	if _, err := st.EnrollDevice(context.Background(), store.Device{ID: "dev-x", Hostname: "<!channel> & <https://phish.example|login>", MachineID: "mx", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	slack := newReceiver(t)
	d := dispatcher(t, st, webhook.Config{Endpoints: []webhook.Endpoint{{Name: "slack", URL: slack.srv.URL, Format: webhook.FormatSlack}}})
	record(t, st, "dev-x", t0, nil, "DC-FW-01", store.Fail)
	round(t, d, t0)
	got := slack.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries", len(got))
	}
	var m map[string]string
	if err := json.Unmarshal(got[0].body, &m); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(m["text"], "<>") || !strings.Contains(m["text"], "&lt;!channel&gt; &amp; &lt;https://phish.example|login&gt;") {
		t.Errorf("slack text %q", m["text"])
	}
}
