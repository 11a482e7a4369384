package main

import (
	"context"
	"strings"
	"testing"

	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestCLIDeviceRevoke: `device revoke|retire` cut a device's credentials
// in the store with the reason given, once; every call, done or refused,
// leaves one audit entry.
func TestCLIDeviceRevoke(t *testing.T) {
	dir := seedDataDir(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		action   string
		detail   string // the audit entry's detail (or the refusal) contains it
	}{
		{"no reason", []string{"device", "revoke", "--data-dir", dir, "dev-1"}, 1, admin.ActionDeviceRevoke + admin.Denied, "a reason is required"},
		{"unknown device", []string{"device", "revoke", "--data-dir", dir, "--reason", "stolen", "dev-nope"}, 1, admin.ActionDeviceRevoke + admin.Denied, `no device "dev-nope"`},
		{"revoke", []string{"device", "revoke", "--data-dir", dir, "--reason", "stolen at the airport", "dev-1"}, 0, admin.ActionDeviceRevoke, `device_id=dev-1 reason="stolen at the airport"`},
		{"revoke again", []string{"device", "revoke", "--data-dir", dir, "--reason", "again", "dev-1"}, 1, admin.ActionDeviceRevoke + admin.Denied, "already revoked"},
		{"retire a revoked device", []string{"device", "retire", "--data-dir", dir, "--reason", "disposed", "dev-1"}, 1, admin.ActionDeviceRetire + admin.Denied, "already revoked"},
		{"no device", []string{"device", "retire", "--data-dir", dir, "--reason", "x"}, 2, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(auditLog(t, dir))
			code, out, errOut := runCLI(tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.wantCode, out, errOut)
			}
			l := auditLog(t, dir)[before:]
			if tt.action == "" {
				if len(l) != 0 {
					t.Errorf("a usage error was audited: %+v", l)
				}
				return
			}
			if len(l) != 1 || l[0].Action != tt.action || !strings.Contains(l[0].Detail, tt.detail) {
				t.Fatalf("audit entries %+v; want one %s containing %q", l, tt.action, tt.detail)
			}
		})
	}
	st, err := sqlite.Open(dbPath(dir), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := st.Device(context.Background(), "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.RevokedAt == nil || d.RevokeReason != "stolen at the airport" || d.Retired {
		t.Errorf("dev-1 after revoke: at %v, reason %q, retired %v", d.RevokedAt, d.RevokeReason, d.Retired)
	}
}

// TestCLICredentialLists: `secret list` and `token list` show what an
// operator can cut, and `secret revoke` cuts a secret (audited) so it
// enrolls nothing.
func TestCLICredentialLists(t *testing.T) {
	dir := seedDataDir(t)
	code, tok, errOut := runCLI("secret", "create", "--data-dir", dir, "--label", "jamf-fleet")
	if code != 0 {
		t.Fatalf("secret create: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI("token", "create", "--data-dir", dir, "--role", "auditor", "--label", "acme-audit"); code != 0 {
		t.Fatalf("token create: %d %s", code, errOut)
	}
	code, out, errOut := runCLI("secret", "list", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "jamf-fleet") || !strings.Contains(out, "USES") {
		t.Fatalf("secret list: %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, strings.TrimSpace(tok)) {
		t.Fatal("secret list shows the secret itself")
	}
	var id string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "jamf-fleet") {
			id = strings.Fields(l)[0]
		}
	}
	if code, out, errOut := runCLI("token", "list", "--data-dir", dir); code != 0 || !strings.Contains(out, "acme-audit") || !strings.Contains(out, "auditor") {
		t.Fatalf("token list: %d\n%s%s", code, out, errOut)
	}
	before := len(auditLog(t, dir))
	if code, _, errOut := runCLI("secret", "revoke", "--data-dir", dir, id); code != 0 {
		t.Fatalf("secret revoke %s: %d %s", id, code, errOut)
	}
	if l := auditLog(t, dir)[before:]; len(l) != 1 || l[0].Action != admin.ActionSecretRevoke || !strings.Contains(l[0].Detail, id) {
		t.Errorf("audit after secret revoke: %+v", l)
	}
	if code, _, errOut := runCLI("secret", "revoke", "--data-dir", dir, "sec_nope"); code != 1 || !strings.Contains(errOut, "no enrollment secret") {
		t.Errorf("revoke of an unknown secret: %d %s", code, errOut)
	}
	st, err := sqlite.Open(dbPath(dir), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	secrets, err := st.EnrollSecrets(context.Background())
	if err != nil || len(secrets) != 1 || secrets[0].RevokedAt == nil {
		t.Errorf("secrets after revoke: %+v, %v", secrets, err)
	}
}
