package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requirePromtool fails under CI=true, and skips otherwise, without
// promtool (Debian's prometheus package).
func requirePromtool(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found in PATH (apt-get install prometheus)")
		}
		t.Skip("promtool not found in PATH (apt-get install prometheus)")
	}
}

// scrape GETs url and returns its status and body.
func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// promtoolCheck runs `promtool check metrics` (the exposition format and
// Prometheus's naming and help conventions) on a scrape.
func promtoolCheck(t *testing.T, what, body string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics on the %s's scrape: %v\n%s", what, err, out.String())
	}
}

// metricValue is a sample's value in a scrape, by its name and labels as
// exposed (`name{a="b"}`); -1 when absent.
func metricValue(body, sample string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

func readURL(t *testing.T, path string) string {
	t.Helper()
	var b []byte
	waitFor(t, path, 20*time.Second, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil && len(bytes.TrimSpace(b)) > 0
	})
	return string(bytes.TrimSpace(b))
}

// TestMetrics: the server and the agent serve Prometheus metrics that
// promtool accepts, with health and readiness, and the counters move as
// evidence flows.
func TestMetrics(t *testing.T) {
	requirePromtool(t)
	root := t.TempDir()
	srvDir, agentDir := filepath.Join(root, "server"), filepath.Join(root, "agent")
	srv := startServerEnv(t, nil, srvDir, "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	srvURL := readURL(t, filepath.Join(srvDir, "metrics.url"))
	enroll(t, srv, agentDir, srv.token(t))

	// The agent refuses to serve its metrics beyond loopback.
	if _, e, err := run(t, nil, agentBin, "run", "--once", "--data-dir", agentDir, "--metrics-listen", "0.0.0.0:0"); err == nil || !strings.Contains(e, "loopback") {
		t.Fatalf("--metrics-listen 0.0.0.0:0: %v\n%s", err, e)
	}
	start(t, "agent.log", agentBin, "run", "--data-dir", agentDir, "--interval", "200ms", "--collectors", "osinfo", "--metrics-listen", "127.0.0.1:0")
	agentURL := readURL(t, filepath.Join(agentDir, "metrics.url"))

	for _, u := range []string{srvURL + "/healthz", srvURL + "/readyz", agentURL + "/healthz"} {
		if code, body := scrape(t, u); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", u, code, body)
		}
	}
	waitFor(t, "the agent's stream ready", 20*time.Second, func() bool {
		code, _ := scrape(t, agentURL+"/readyz")
		return code == http.StatusOK
	})

	type sample struct{ url, name string }
	moving := []sample{
		{srvURL, `evident_observations_total{kind="new"}`},
		{srvURL, `evident_reports_total{result="stored"}`},
		{srvURL, `evident_report_ingest_seconds_count`},
		{agentURL, `evident_agent_collector_runs_total{collector="osinfo",status="ok"}`},
		{agentURL, `evident_agent_last_ack_timestamp_seconds`},
	}
	var srvBody, agentBody string
	// read scrapes both and returns the moving samples' values.
	read := func() map[sample]float64 {
		_, srvBody = scrape(t, srvURL+"/metrics")
		_, agentBody = scrape(t, agentURL+"/metrics")
		vals := map[sample]float64{}
		for _, s := range moving {
			body := srvBody
			if s.url == agentURL {
				body = agentBody
			}
			vals[s] = metricValue(body, s.name)
		}
		return vals
	}
	var first map[sample]float64
	waitFor(t, "evidence counted on both sides", 30*time.Second, func() bool {
		first = read()
		for _, v := range first {
			if v <= 0 {
				return false
			}
		}
		return true
	})
	promtoolCheck(t, "server", srvBody)
	promtoolCheck(t, "agent", agentBody)
	for _, want := range []string{`evident_streams_open 1`, `evident_device_certificates_expiring{within="30d"} 0`, `evident_build_info{binary="evident-server"`} {
		if !strings.Contains(srvBody, want) {
			t.Errorf("server scrape lacks %s", want)
		}
	}
	for _, want := range []string{`evident_agent_stream_connected 1`, `evident_agent_certificate_expiry_timestamp_seconds `, `evident_agent_outbox_depth `} {
		if !strings.Contains(agentBody, want) {
			t.Errorf("agent scrape lacks %s", want)
		}
	}
	waitFor(t, "the counters to move", 30*time.Second, func() bool {
		for s, v := range read() {
			if v <= first[s] {
				return false
			}
		}
		return true
	})
}
