package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyCheckCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := cmdPolicyCheck([]string{"../../controls/testdata/example-policy.json"}, &out, &errb); err != nil {
		t.Fatalf("valid policy: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"valid (version 2)", "added:    ACME-FW-02, ACME-ENC-02, ACME-MAL-02", "removed:  DC-PATCH-02, DC-BOOT-01, DC-TPM-01, DC-MAL-01",
		"DC-PATCH-01: title; params {\"max_days\":14,\"max_index_age_days\":7} → {\"max_days\":7}", "grace:    DC-FW-01 72h, DC-LOCK-01 24h", "DC-FW-01: applies_to none → 'laptops' in device.groups; grace none → 72h", "laptops:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"version": 2, "groups": {"g": "nope"}, "controls": [{"id": "A", "check": "x"}, {"id": "X-1", "check": "cel", "params": {"collector": "firewall", "pass": "payloadd.x"}}]}`), 0o600)
	out.Reset()
	errb.Reset()
	err := cmdPolicyCheck([]string{bad}, &out, &errb)
	if err == nil || !strings.Contains(errb.String(), "3 problems") || !strings.Contains(errb.String(), "control X-1: params: pass: ERROR: <input>:1:1: undeclared reference to 'payloadd'") {
		t.Errorf("bad policy: %v\n%s", err, errb.String())
	}
	t.Log(errb.String())
	if err := cmdPolicyCheck(nil, &out, &errb); err == nil {
		t.Error("no file accepted")
	}
}
