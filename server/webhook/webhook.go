// Package webhook tells people when something goes wrong: it delivers the
// store's alerts (a control of a device turning fail or unknown, a policy
// group's compliance crossing its threshold) to HTTP endpoints, as generic
// JSON or in Slack's incoming-webhook format.
//
// Each alert is written by the store in the transaction that records the
// transition (store.Alerts), so it exists exactly once however many
// replicas score the device. The replica holding the "alerts" lease
// delivers: a POST per endpoint, signed with the endpoint's secret
// (HMAC-SHA256, see Sign), retried with exponential back-off until every
// endpoint accepted it (2xx) or MaxAttempts is reached. An endpoint that
// accepted an alert is not sent it again, and every delivery or give-up is
// written to the audit log. A crash between an endpoint's 2xx and the
// store's record of it resends that alert once: its id (X-Evident-Delivery
// and "id") lets a receiver drop the repeat.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/internal/pct"
	"github.com/evident-dev/evident/server/store"
)

// Formats of an endpoint's body.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
)

// Events an endpoint can choose.
var Events = []string{"control.fail", "control.unknown", "group.below", "group.recovered"}

// Endpoint is one receiver.
type Endpoint struct {
	// Name identifies it in the audit log and in the store's record of who
	// has an alert: renaming an endpoint sends it what is still pending.
	Name string
	URL  string
	// Format is FormatJSON (default) or FormatSlack.
	Format string
	// Secret keys the signature (X-Evident-Signature); empty sends none.
	Secret []byte
	// Events it is sent (empty: all of Events).
	Events []string
}

// wants reports whether e is sent event.
func (e Endpoint) wants(event string) bool {
	return len(e.Events) == 0 || slices.Contains(e.Events, event)
}

// Threshold raises group.below when fewer than MinCompliant percent of a
// policy group's devices are compliant, and group.recovered when it is met
// again. A group with no device is not below.
type Threshold struct {
	Group        string
	MinCompliant float64
}

// Defaults.
const (
	DefaultEvery       = 10 * time.Second
	DefaultRetryBase   = 30 * time.Second
	DefaultRetryMax    = time.Hour
	DefaultMaxAttempts = 12 // about 6 hours of retries with the defaults
	DefaultTimeout     = 10 * time.Second
)

// Config is the dispatcher's configuration.
type Config struct {
	Endpoints  []Endpoint
	Thresholds []Threshold
	// Every is how often due alerts are sent and thresholds checked.
	Every time.Duration
	// RetryBase is the wait after a first failed attempt; it doubles per
	// attempt up to RetryMax. MaxAttempts ends the retries.
	RetryBase, RetryMax time.Duration
	MaxAttempts         int
	// Timeout bounds one POST.
	Timeout time.Duration
	// Titles names the policy's controls (id to title) in messages.
	Titles map[string]string
	// WebURL, when set, is the web UI's base URL: messages link the
	// device's page.
	WebURL string
	Log    *slog.Logger
	// Client sends the POSTs (default: one that follows no redirect).
	Client *http.Client
}

// Validate checks c and fills its defaults.
func (c *Config) Validate() error {
	names := map[string]bool{}
	for i, e := range c.Endpoints {
		if e.Name == "" {
			return fmt.Errorf("webhook %d: no name", i+1)
		}
		if strings.Contains(e.Name, ",") || names[e.Name] {
			return fmt.Errorf("webhook %q: a name must be unique and have no comma", e.Name)
		}
		names[e.Name] = true
		u, err := url.Parse(e.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("webhook %q: url %q is not an http(s) URL", e.Name, e.URL)
		}
		switch e.Format {
		case "":
			c.Endpoints[i].Format = FormatJSON
		case FormatJSON, FormatSlack:
		default:
			return fmt.Errorf("webhook %q: format %q: want %s or %s", e.Name, e.Format, FormatJSON, FormatSlack)
		}
		for _, ev := range e.Events {
			if !slices.Contains(Events, ev) {
				return fmt.Errorf("webhook %q: event %q: want one of %s", e.Name, ev, strings.Join(Events, ", "))
			}
		}
	}
	groups := map[string]bool{}
	for _, t := range c.Thresholds {
		if t.Group == "" || groups[t.Group] {
			return fmt.Errorf("threshold: group %q is empty or repeated", t.Group)
		}
		groups[t.Group] = true
		if t.MinCompliant <= 0 || t.MinCompliant > 100 {
			return fmt.Errorf("threshold of group %q: min_compliant_percent %v: want more than 0, at most 100", t.Group, t.MinCompliant)
		}
	}
	if c.Every <= 0 {
		c.Every = DefaultEvery
	}
	if c.RetryBase <= 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax < c.RetryBase {
		c.RetryMax = max(DefaultRetryMax, c.RetryBase)
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Client == nil {
		c.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return nil
}

// Store is what the dispatcher reads and writes.
type Store interface {
	store.Alerts
	store.Leases
	Device(ctx context.Context, id string) (store.Device, error)
	AddAudit(ctx context.Context, e store.AuditEntry) (int64, error)
}

// Dispatcher delivers alerts.
type Dispatcher struct {
	st  Store
	cfg Config
}

// New returns a dispatcher; cfg must have passed Validate.
func New(st Store, cfg Config) *Dispatcher { return &Dispatcher{st: st, cfg: cfg} }

// batch bounds the alerts one round sends.
const batch = 100

// Run delivers alerts every cfg.Every while holder has the "alerts" lease,
// until ctx ends.
func (d *Dispatcher) Run(ctx context.Context, holder string) {
	t := time.NewTicker(d.cfg.Every)
	defer t.Stop()
	held := false
	for {
		now := clock.Now()
		ok, err := d.st.TakeLease(ctx, "alerts", holder, now, now.Add(3*d.cfg.Every))
		switch {
		case err != nil && ctx.Err() == nil:
			d.cfg.Log.Error("taking the alerts lease failed", "err", err)
		case ok:
			if !held {
				d.cfg.Log.Info("alerts lease", "held", true, "holder", holder)
			}
			if _, err := d.Round(ctx, now); err != nil && ctx.Err() == nil {
				d.cfg.Log.Error("delivering alerts failed", "err", err)
			}
		case held:
			d.cfg.Log.Info("alerts lease", "held", false, "holder", holder)
		}
		held = ok && err == nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round checks the thresholds and makes one attempt at each alert due at
// now; it returns how many alerts it finished (delivered everywhere, or
// given up).
func (d *Dispatcher) Round(ctx context.Context, now time.Time) (int, error) {
	for _, t := range d.cfg.Thresholds {
		if err := d.checkGroup(ctx, t, now); err != nil {
			return 0, err
		}
	}
	due, err := d.st.PendingAlerts(ctx, now, batch)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	done := 0
	for _, a := range due {
		if ctx.Err() != nil {
			return done, ctx.Err()
		}
		// The round's time, moved on by how long the round has taken: what
		// the signature's t says, and when a retry is due from.
		at := now.Add(time.Since(start))
		// Claimed for as long as this attempt can take, so another replica
		// (should the lease pass to it meanwhile) does not send it too.
		ok, err := d.st.ClaimAlert(ctx, a, at.Add(time.Duration(len(d.cfg.Endpoints)+1)*d.cfg.Timeout))
		if err != nil {
			return done, err
		}
		if !ok {
			continue
		}
		finished, err := d.attempt(ctx, a, now, at)
		if err != nil {
			return done, err
		}
		if finished {
			done++
		}
	}
	return done, nil
}

func (d *Dispatcher) checkGroup(ctx context.Context, t Threshold, now time.Time) error {
	n, ok, err := d.st.GroupCompliance(ctx, t.Group)
	if err != nil {
		return err
	}
	below := n > 0 && float64(ok)*100 < t.MinCompliant*float64(n)
	share := pct.NA + ", no device in scope"
	if n > 0 {
		share = pct.Format(100*float64(ok)/float64(n), 1) + "%"
	}
	a := store.Alert{CreatedAt: now, Status: "recovered", Previous: "below",
		Reason: fmt.Sprintf("%d of %d devices compliant (%s), threshold %s%%", ok, n, share, strconv.FormatFloat(t.MinCompliant, 'f', -1, 64))}
	if below {
		a.Status, a.Previous = "below", ""
	}
	changed, err := d.st.MarkGroup(ctx, t.Group, below, a)
	if changed {
		d.cfg.Log.Info("group threshold crossed", "group", t.Group, "status", a.Status, "devices", n, "compliant", ok)
	}
	return err
}

// event names an alert's event.
func event(a store.Alert) string { return a.Kind + "." + a.Status }

// attempt sends a to every endpoint that wants it and has not accepted it,
// and records the outcome: retries are due from the round's time now,
// signatures say sent (now plus the time the round has taken).
func (d *Dispatcher) attempt(ctx context.Context, a store.Alert, now, sent time.Time) (bool, error) {
	ev := event(a)
	var dev *store.Device
	if a.Kind == store.AlertControl {
		if got, err := d.st.Device(ctx, a.Subject); err == nil {
			dev = &got
		} else if !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
	}
	a.Attempts++
	var failed []string
	interrupted := false
	for _, e := range d.cfg.Endpoints {
		if !e.wants(ev) || slices.Contains(a.DeliveredTo, e.Name) {
			continue
		}
		body, err := d.body(e, a, dev)
		if err != nil {
			return false, err
		}
		if err := d.post(ctx, e, a, body, sent); err != nil {
			if ctx.Err() != nil {
				interrupted = true // shutting down: record what was delivered
				break
			}
			failed = append(failed, e.Name+": "+err.Error())
			d.cfg.Log.Warn("webhook delivery failed", "endpoint", e.Name, "alert", a.ID, "event", ev, "attempt", a.Attempts, "err", err)
			continue
		}
		a.DeliveredTo = append(a.DeliveredTo, e.Name)
		d.audit(ctx, now, "webhook.delivered", fmt.Sprintf("alert=%d event=%s subject=%s control=%s endpoint=%s attempt=%d", a.ID, ev, a.Subject, a.ControlID, e.Name, a.Attempts))
	}
	a.LastError = strings.Join(failed, "; ")
	finished := !interrupted && (len(failed) == 0 || a.Attempts >= d.cfg.MaxAttempts)
	if finished {
		a.DoneAt = &now
		if len(failed) > 0 {
			d.cfg.Log.Error("webhook delivery given up", "alert", a.ID, "event", ev, "attempts", a.Attempts, "err", a.LastError)
			d.audit(ctx, now, "webhook.failed", fmt.Sprintf("alert=%d event=%s subject=%s control=%s attempts=%d: %s", a.ID, ev, a.Subject, a.ControlID, a.Attempts, a.LastError))
		}
	} else if interrupted {
		a.NextAt = now // due again at the next round
	} else {
		a.NextAt = now.Add(d.backoff(a.Attempts))
	}
	// Recorded even when ctx ends meanwhile (shutdown): the endpoints that
	// accepted it are not sent it again.
	if _, err := d.st.AlertAttempted(context.WithoutCancel(ctx), a); err != nil {
		return false, err
	}
	if interrupted {
		return false, ctx.Err()
	}
	return finished, nil
}

// backoff is the wait after attempt n (from 1) failed.
func (d *Dispatcher) backoff(n int) time.Duration {
	w := d.cfg.RetryBase
	for i := 1; i < n && w < d.cfg.RetryMax; i++ {
		w *= 2
	}
	return min(w, d.cfg.RetryMax)
}

func (d *Dispatcher) audit(ctx context.Context, now time.Time, action, detail string) {
	if _, err := d.st.AddAudit(ctx, store.AuditEntry{Time: now.UTC(), Actor: "server", Action: action, Detail: detail}); err != nil && ctx.Err() == nil {
		d.cfg.Log.Warn("auditing a webhook delivery failed", "err", err)
	}
}

// maxResponse bounds what is read of a receiver's answer.
const maxResponse = 64 << 10

func (d *Dispatcher) post(ctx context.Context, e Endpoint, a store.Alert, body []byte, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "evident-server")
	req.Header.Set("X-Evident-Event", event(a))
	req.Header.Set("X-Evident-Delivery", strconv.FormatInt(a.ID, 10))
	if len(e.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(e.Secret, now, body))
	}
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a token: never in logs
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// SignatureHeader carries the signature: "t=<unix seconds>,v1=<hex>",
// where the hex is HMAC-SHA256 keyed with the endpoint's secret over
// "<unix seconds>." followed by the body. A receiver recomputes it (Verify)
// and refuses an old t, so a captured request cannot be replayed later.
const SignatureHeader = "X-Evident-Signature"

// Sign returns the SignatureHeader value of body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a SignatureHeader value against body: the signature must
// match and t be within tolerance of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("signature: no timestamp")
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return errors.New("signature: no v1 signature")
	}
	if !hmac.Equal(got, mac(secret, ts, body)) {
		return errors.New("signature: does not match")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature: made %s from now, outside %s", d.Round(time.Second), tolerance)
	}
	return nil
}

var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Message is the JSON body (FormatJSON).
type Message struct {
	// ID is the alert's id, the same on every retry: a receiver drops a
	// repeat by it.
	ID        int64     `json:"id"`
	Event     string    `json:"event"`
	CreatedAt time.Time `json:"created_at"`
	Attempt   int       `json:"attempt"`
	Device    *Device   `json:"device,omitempty"`
	Control   *Control  `json:"control,omitempty"`
	Group     *Group    `json:"group,omitempty"`
	// URL is the device's page in the web UI (when the server knows it).
	URL string `json:"url,omitempty"`
	// Text is the message in one line, as Slack is sent it.
	Text string `json:"text"`
}

// Device identifies the device of a control alert.
type Device struct {
	ID           string `json:"id"`
	Hostname     string `json:"hostname,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	OS           string `json:"os,omitempty"`
}

// Control is a control alert's transition.
type Control struct {
	ID       string `json:"id"`
	Title    string `json:"title,omitempty"`
	Status   string `json:"status"`
	Previous string `json:"previous,omitempty"`
	Reason   string `json:"reason"`
}

// Group is a threshold alert.
type Group struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Reason string `json:"reason"`
}

func (d *Dispatcher) message(a store.Alert, dev *store.Device) Message {
	m := Message{ID: a.ID, Event: event(a), CreatedAt: a.CreatedAt.UTC(), Attempt: a.Attempts}
	switch a.Kind {
	case store.AlertGroup:
		m.Group = &Group{Name: a.Subject, Status: a.Status, Reason: a.Reason}
		verb := "is below its compliance threshold"
		if a.Status == "recovered" {
			verb = "meets its compliance threshold again"
		}
		m.Text = fmt.Sprintf("Evident: group %s %s: %s", a.Subject, verb, a.Reason)
	default:
		m.Device = &Device{ID: a.Subject}
		name := a.Subject
		if dev != nil {
			m.Device.Hostname, m.Device.SerialNumber, m.Device.OS = dev.Hostname, dev.SerialNumber, dev.GOOS
			if dev.Hostname != "" {
				name = dev.Hostname
			}
		}
		title := d.cfg.Titles[a.ControlID]
		m.Control = &Control{ID: a.ControlID, Title: title, Status: a.Status, Previous: a.Previous, Reason: a.Reason}
		if d.cfg.WebURL != "" {
			m.URL = strings.TrimSuffix(d.cfg.WebURL, "/") + "/devices/" + url.PathEscape(a.Subject)
		}
		label := a.ControlID
		if title != "" {
			label += " (" + title + ")"
		}
		was := ""
		if a.Previous != "" {
			was = " (was " + strings.ToUpper(a.Previous) + ")"
		}
		m.Text = fmt.Sprintf("Evident: %s is %s on %s%s: %s", label, strings.ToUpper(a.Status), name, was, a.Reason)
		if m.URL != "" {
			m.Text += " " + m.URL
		}
	}
	return m
}

func (d *Dispatcher) body(e Endpoint, a store.Alert, dev *store.Device) ([]byte, error) {
	m := d.message(a, dev)
	if e.Format == FormatSlack {
		// Slack reads <…> as links and mentions (<!channel>): text from a
		// device (its hostname, a reason) must not become one.
		return json.Marshal(struct {
			Text string `json:"text"`
		}{slackEscape.Replace(m.Text)})
	}
	return json.Marshal(m)
}
