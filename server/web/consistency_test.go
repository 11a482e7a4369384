package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/scorer"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/web/webtest"
)

// TestReadPathConsistency: at the same instant, the fleet page, the device
// list (web and API) and the period report show every device's every
// control in the same status. It holds when the evidence has gone stale
// since the last evaluation (a re-scoring read would show unknown where the
// intervals still say pass) and again after the periodic rescore.
func TestReadPathConsistency(t *testing.T) {
	e := newEnv(t, false)
	p := e.fleet.Policy
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(12, 34))
	deny := evidence.FirewallPayload{Enabled: true, InboundDefaultDeny: true, Verdict: evidence.FirewallVerdictDeny, Reason: "inbound denied", DecidedBy: "nftables"}
	open := evidence.FirewallPayload{Enabled: true, Verdict: evidence.FirewallVerdictOpen, Reason: "IPv4 tcp open", DecidedBy: "nftables"}
	on, off := true, false
	sbOn := evidence.SecureBootPayload{UEFI: true, Enabled: &on, SetupMode: &off}
	sbOff := evidence.SecureBootPayload{UEFI: true, Enabled: &off, SetupMode: &off}
	src := evidence.Source{Kind: "command", Ref: "/usr/sbin/nft -j list ruleset"}
	// 40 more devices, each with 1 to 4 reports over the last 20 days,
	// scored at each report (as ingest does) and at enrollment.
	for i := range 40 {
		id := fmt.Sprintf("dev_%032d", i)
		enrolled := webtest.Now.Add(-time.Duration(20*24+rng.IntN(24)) * time.Hour)
		d := store.Device{ID: id, Hostname: fmt.Sprintf("host-%02d", i), GOOS: []string{"linux", "darwin", "windows"}[i%3], EnrolledAt: enrolled}
		if _, err := e.st.EnrollDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := scorer.Score(ctx, e.st, p, id, enrolled); err != nil {
			t.Fatal(err)
		}
		at := enrolled
		for seq := uint64(1); seq < uint64(2+rng.IntN(7)); seq += 2 {
			at = at.Add(time.Duration(1+rng.IntN(5*24)) * time.Hour)
			if at.After(webtest.Now) {
				break
			}
			fw, sb := deny, sbOn
			if rng.IntN(3) == 0 {
				fw = open
			}
			if rng.IntN(4) == 0 {
				sb = sbOff
			}
			obs := []store.Observation{obsOf(t, seq, evidence.Firewall, at, fw, src), obsOf(t, seq+1, evidence.SecureBoot, at, sb, src)}
			if _, err := e.st.Ingest(ctx, id, obs, at); err != nil {
				t.Fatal(err)
			}
			if err := scorer.Score(ctx, e.st, p, id, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := e.browser()
	b.login(e.fleet.AuditorToken)

	check := func(name string) {
		t.Helper()
		now := e.clock.now()
		api := apiStatuses(t, e, "Bearer "+e.fleet.AuditorToken)
		if len(api) != 43 {
			t.Fatalf("%s: the API lists %d devices, want 43", name, len(api))
		}
		list := pageStatuses(t, b, len(p.Controls))
		fleet := fleetCounts(t, b)
		rep := periodStatuses(t, e, now)
		counts := map[string]map[string]int{}
		for dev, sts := range api {
			for _, c := range p.Controls {
				st := sts[c.ID]
				if counts[c.ID] == nil {
					counts[c.ID] = map[string]int{}
				}
				counts[c.ID][st]++
				if got := list[dev][c.ID]; got != st {
					t.Errorf("%s: %s %s: API %s, device list page %s", name, dev, c.ID, st, got)
				}
				// The period report lists a control's open exceptions at its
				// end: a device is fail or unknown there exactly when the
				// API says so.
				want := ""
				if st == store.Fail || st == store.Unknown || st == store.NoData {
					want = st
					if st == store.NoData {
						want = store.Unknown // time without an interval is unknown
					}
				}
				if got := rep[dev][c.ID]; got != want {
					t.Errorf("%s: %s %s: API %s, period report's open exception %q", name, dev, c.ID, st, got)
				}
			}
		}
		for _, c := range p.Controls {
			got, want := fleet[c.ID], [3]int{counts[c.ID][store.Pass], counts[c.ID][store.Fail], counts[c.ID][store.Unknown] + counts[c.ID][store.NoData]}
			if got != want {
				t.Errorf("%s: fleet page %s pass/fail/unknown = %v, the devices say %v", name, c.ID, got, want)
			}
		}
	}
	check("after the last reports")
	// Two days on, nothing new: the recorded states stand everywhere until
	// the server re-evaluates.
	e.clock.add(48 * time.Hour)
	b.login(e.fleet.AuditorToken) // the morning's session has expired
	check("two days later, before the rescore")
	before := apiStatuses(t, e, "Bearer "+e.fleet.AuditorToken)
	for i := range 40 {
		if err := scorer.Score(ctx, e.st, p, fmt.Sprintf("dev_%032d", i), e.clock.now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{webtest.Alice, webtest.Bob, webtest.Carol} {
		if err := scorer.Score(ctx, e.st, p, id, e.clock.now()); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.add(time.Minute)
	check("after the rescore")
	// The rescore did change what is shown (stale evidence is unknown, a
	// silent agent fails): the check above compared something that moved.
	after, changed := apiStatuses(t, e, "Bearer "+e.fleet.AuditorToken), 0
	for dev, sts := range after {
		for c, st := range sts {
			if before[dev][c] != st {
				changed++
			}
		}
	}
	if changed == 0 {
		t.Error("the rescore two days after the last reports changed no status")
	}
}

func obsOf(t *testing.T, seq uint64, collector string, at time.Time, payload any, src evidence.Source) store.Observation {
	t.Helper()
	pb, _ := json.Marshal(payload)
	sb, _ := json.Marshal([]evidence.Source{src})
	v, _ := evidence.CurrentVersion(collector)
	return store.Observation{Seq: seq, Collector: collector, CollectedAt: at, Status: "ok", ParserVersion: v, Payload: pb, Sources: sb}
}

// apiStatuses reads every page of /api/v1/devices.
func apiStatuses(t *testing.T, e *env, auth string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for next := "/api/v1/devices?limit=7"; next != ""; {
		req, _ := http.NewRequest("GET", e.srv.URL+next, nil)
		req.Header.Set("Authorization", auth)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Devices []struct {
				ID       string
				Controls map[string]string
			}
			Next string
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", next, res.StatusCode, err)
		}
		for _, d := range page.Devices {
			if out[d.ID] != nil {
				t.Fatalf("device %s on two pages", d.ID)
			}
			out[d.ID] = d.Controls
		}
		next = page.Next
	}
	return out
}

var (
	rowRE    = regexp.MustCompile(`(?s)<tr>\s*<td><a href="/devices/([^"]+)">.*?</tr>`)
	statusRE = regexp.MustCompile(`<td class="st-([a-z-]+)">`)
	nextRE   = regexp.MustCompile(`<a href="([^"]+)" rel="next" id="next-page">`)
)

// pageStatuses reads every page of the web device list.
func pageStatuses(t *testing.T, b *browser, controls int) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	ids := []string{}
	for _, c := range b.e.fleet.Policy.Controls {
		ids = append(ids, c.ID)
	}
	for next := "/devices?limit=9"; next != ""; {
		r := b.get(next)
		if r.code != 200 {
			t.Fatalf("GET %s = %d", next, r.code)
		}
		for _, m := range rowRE.FindAllStringSubmatch(r.body, -1) {
			sts := statusRE.FindAllStringSubmatch(m[0], -1)
			if len(sts) != controls {
				t.Fatalf("device row %s has %d statuses, want %d", m[1], len(sts), controls)
			}
			out[m[1]] = map[string]string{}
			for i, s := range sts {
				out[m[1]][ids[i]] = strings.ReplaceAll(s[1], "-", "_")
			}
		}
		next = ""
		if m := nextRE.FindStringSubmatch(r.body); m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	return out
}

var countRE = regexp.MustCompile(`(?s)<td><code>([^<]+)</code></td>.*?class="st-pass">(\d+)</a>.*?class="st-fail">(\d+)</a>.*?class="st-unknown">(\d+)</a>(?: <span[^>]*>\+(\d+) no data</span>)?`)

// fleetCounts reads the fleet page's pass/fail/unknown (with no data) per
// control.
func fleetCounts(t *testing.T, b *browser) map[string][3]int {
	t.Helper()
	r := b.get("/")
	if r.code != 200 {
		t.Fatalf("GET / = %d", r.code)
	}
	out := map[string][3]int{}
	for _, m := range countRE.FindAllStringSubmatch(r.body, -1) {
		n := func(s string) int { v, _ := strconv.Atoi(s); return v }
		out[m[1]] = [3]int{n(m[2]), n(m[3]), n(m[4]) + n(m[5])}
	}
	if len(out) != len(b.e.fleet.Policy.Controls) {
		t.Fatalf("fleet page shows %d controls' counts, want %d", len(out), len(b.e.fleet.Policy.Controls))
	}
	return out
}

// periodStatuses reads the period report (the 30 days up to tomorrow,
// counted up to now) and returns each device's open exceptions at its end.
func periodStatuses(t *testing.T, e *env, now time.Time) map[string]map[string]string {
	t.Helper()
	from, to := now.AddDate(0, 0, -30).Format(time.DateOnly), now.AddDate(0, 0, 1).Format(time.DateOnly)
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/period?from="+from+"&to="+to, nil)
	req.Header.Set("Authorization", "Bearer "+e.fleet.AuditorToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var rep struct {
		CountedTo time.Time `json:"counted_to"`
		Controls  []struct {
			ID         string
			Exceptions []struct {
				DeviceID string `json:"device_id"`
				Status   string
				End      time.Time
				Open     bool
			}
		}
	}
	if res.StatusCode != 200 || json.Unmarshal(body, &rep) != nil {
		t.Fatalf("period report: %d\n%.500s", res.StatusCode, body)
	}
	if !rep.CountedTo.Equal(now) {
		t.Fatalf("period report counted to %s, want now (%s)", rep.CountedTo, now)
	}
	out := map[string]map[string]string{}
	for _, c := range rep.Controls {
		for _, x := range c.Exceptions {
			if !x.End.Equal(rep.CountedTo) {
				continue
			}
			if out[x.DeviceID] == nil {
				out[x.DeviceID] = map[string]string{}
			}
			out[x.DeviceID][c.ID] = x.Status
		}
	}
	return out
}
