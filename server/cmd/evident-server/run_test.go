package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRunRefusesBadLimits: `run` refuses admission limits that would stop
// ingest (no slot, no wait) or are absurd, before it opens anything.
func TestRunRefusesBadLimits(t *testing.T) {
	for _, args := range [][]string{
		{"--max-in-flight", "0"},
		{"--max-in-flight", "-3"},
		{"--max-in-flight", "100000"},
		{"--queue-wait", "0s"},
		{"--queue-wait", "-1s"},
		{"--busy-retry", "0s"},
		{"--busy-retry", "3m1s"},
	} {
		var stdout, stderr bytes.Buffer
		dir := t.TempDir()
		code := run(append([]string{"run", "--data-dir", dir, "--listen", "127.0.0.1:0"}, args...), &stdout, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), "--max-in-flight must be from 1 to 4096, --queue-wait positive and --busy-retry positive, at most 3m0s") {
			t.Errorf("run %v: exit %d, stderr %q; want a refusal naming the limits", args, code, stderr.String())
		}
	}
}

func TestRunRefusesBadLogFormat(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--log-format", "xml"}, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), `--log-format "xml": want text or json`) {
		t.Errorf("exit %d, stderr %q; want the format refused", code, stderr.String())
	}
}

func TestRunRefusesHalfAWebCertificate(t *testing.T) {
	for _, args := range [][]string{{"--web-cert", "web.pem"}, {"--web-key", "web.key"}} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"run", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0"}, args...), &stdout, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), "--web-cert and --web-key go together") {
			t.Errorf("run %v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0", "--web-cert", "missing.pem", "--web-key", "missing.key"}, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "missing.pem") {
		t.Errorf("missing files: exit %d, stderr %q", code, stderr.String())
	}
}
