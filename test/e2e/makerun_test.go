package e2e

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evident-dev/evident/internal/swtpmtest"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestMakeRun runs the script behind `make run` twice on one ./var: each run
// prints this machine's posture (every control with its status, SOC 2
// criteria and evidence) and exits 0, and the second shows more history.
func TestMakeRun(t *testing.T) {
	varDir := t.TempDir()
	history := regexp.MustCompile(`evidence history: (\d+) observations`)
	var counts []int
	for i := range 2 {
		cmd := exec.Command("./test/run-local.sh")
		cmd.Dir = "../.."
		cmd.Env = append(cmd.Environ(), "VAR="+varDir, "BIN="+filepath.Dir(agentBin))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, out)
		}
		report := string(out)
		for _, c := range controls.Default().Controls {
			line := regexp.MustCompile(`(?m)^  ` + c.ID + `\s+(PASS|FAIL|UNKNOWN|NOT_APPLICABLE)\s+` + regexp.QuoteMeta(strings.Join(c.Criteria, ",")) + `\s`)
			if !line.MatchString(report) {
				t.Errorf("run %d: no status line for %s with criteria %v:\n%s", i+1, c.ID, c.Criteria, report)
			}
		}
		if !strings.Contains(report, "Evidence:") || !strings.Contains(report, "DC-ENC-01  diskencryption seq") {
			t.Errorf("run %d: the report shows no evidence:\n%s", i+1, report)
		}
		m := history.FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("run %d: no history line:\n%s", i+1, report)
		}
		n, _ := strconv.Atoi(m[1])
		counts = append(counts, n)
		if tpms, _ := filepath.Glob("/sys/class/tpm/tpm*"); len(tpms) == 0 &&
			!regexp.MustCompile(`(?m)^  DC-TPM-01\s+FAIL\s.*no TPM: this device has no TPM`).MatchString(report) {
			t.Errorf("run %d on a machine without a TPM: DC-TPM-01 does not say \"no TPM\":\n%s", i+1, report)
		}
		if !strings.Contains(report, "web UI: run 'make serve', open http://127.0.0.1:8080/ and log in with the auditor token it prints") {
			t.Errorf("run %d does not say how to open the web UI:\n%s", i+1, report)
		}
		if i == 1 && !strings.Contains(report, "already enrolled") {
			t.Errorf("second run enrolled again instead of reusing ./var:\n%s", report)
		}
	}
	if counts[1] <= counts[0] {
		t.Fatalf("history did not grow: %d observations after the first run, %d after the second", counts[0], counts[1])
	}
}

// TestMakeRunSwtpm runs `make run-swtpm`'s script: with a software TPM the
// agent enrolls bound to it, answers the server's challenge, and the report
// shows DC-TPM-01 passing on the verified quote, with its checks as
// evidence.
func TestMakeRunSwtpm(t *testing.T) {
	swtpmtest.Require(t, "swtpm", "swtpm_setup")
	cmd := exec.Command("./test/run-local.sh")
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), "VAR="+t.TempDir(), "BIN="+filepath.Dir(agentBin), "EVIDENT_TPM=swtpm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	report := string(out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`bound to TPM swtpm:127\.0\.0\.1:\d+`),
		regexp.MustCompile(`(?m)^  DC-TPM-01\s+PASS\s+CC6\.1\s.*TPM 2\.0 quote verified with the AK bound at enrollment \(EK: allowlist\); PCRs sha256 0-7`),
		regexp.MustCompile(`(?m)^  DC-TPM-01  tpm\.attestation seq \d+`),
		regexp.MustCompile(`check signature: ok`),
		regexp.MustCompile(`check nonce: ok`),
	} {
		if !want.MatchString(report) {
			t.Errorf("make run-swtpm output lacks %s:\n%s", want, report)
		}
	}
}

// TestMakeServe runs `make serve`'s script on a `make run` data directory:
// it prints the web UI's URL and a token, and the token logs in there.
func TestMakeServe(t *testing.T) {
	varDir := t.TempDir()
	env := append(os.Environ(), "VAR="+varDir, "BIN="+filepath.Dir(agentBin), "WEB=127.0.0.1:0")
	cmd := exec.Command("./test/serve.sh")
	cmd.Dir, cmd.Env = "../..", env
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	urlRE, tokRE := regexp.MustCompile(`web UI: (http://127\.0\.0\.1:\d+)`), regexp.MustCompile(`(?m)^(evw1_\S+)$`)
	var url, token string
	waitFor(t, "make serve to print the URL and a token", 2*time.Minute, func() bool {
		m, k := urlRE.FindStringSubmatch(out.String()), tokRE.FindStringSubmatch(out.String())
		if m == nil || k == nil {
			return false
		}
		url, token = m[1], k[1]
		return true
	})
	req, _ := http.NewRequest("GET", url+"/api/v1/fleet", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"devices_enrolled"`) {
		t.Errorf("GET /api/v1/fleet with the printed token: %d %s", resp.StatusCode, body)
	}
}

// TestMakeServeBusyPort: when the web UI cannot start (its port is taken),
// `make serve` says so, fails, and leaves no login token behind (it used to
// create one first).
func TestMakeServeBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	varDir := t.TempDir()
	env := append(os.Environ(), "VAR="+varDir, "BIN="+filepath.Dir(agentBin), "WEB="+busy.Addr().String())
	cmd := exec.Command("./test/serve.sh")
	cmd.Dir, cmd.Env = "../..", env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "evident-server exited") {
		t.Fatalf("make serve on a busy port: %v\n%s", err, out)
	}
	st, err := sqlite.Open(filepath.Join(varDir, "server", "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	toks, err := st.Tokens(t.Context())
	if err != nil || len(toks) != 0 {
		t.Errorf("tokens after a failed make serve: %+v, %v; want none", toks, err)
	}
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
