package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/evident-dev/evident/internal/swtpmtest"
	"github.com/evident-dev/evident/server/controls"
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
