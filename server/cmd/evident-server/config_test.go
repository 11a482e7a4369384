package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runFlags() (*flag.FlagSet, *string, *time.Duration) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("store", os.Getenv("EVIDENT_STORE"), "")
	listen := fs.String("listen", ":8443", "")
	every := fs.Duration("rescore-interval", 5*time.Minute, "")
	fs.String("web-listen", "", "")
	fs.String("config", "", "")
	return fs, listen, every
}

func TestRunFile(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "ops.secret")
	if err := os.WriteFile(secretFile, []byte("  s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.secret")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hook := "webhooks:\n  - name: ops\n    url: https://hooks.example.com/evident\n"
	for _, tt := range []struct {
		name, yaml, want string
	}{
		{"empty", "", ""},
		{"comment only", "# nothing yet\n", ""},
		{"flags", "listen: 127.0.0.1:9443\nrescore_interval: 10m\n", ""},
		{"webhook", hook + "    secret_file: " + secretFile + "\n", ""},
		{"not a mapping", "- a\n", "want a mapping"},
		{"unknown key", "lisen: x\n", `unknown setting "lisen"`},
		{"config in config", "config: other.yaml\n", `unknown setting "config"`},
		{"nested flag value", "listen:\n  a: b\n", "want a single value"},
		{"set twice", "listen: a\nlisten: b\n", "set twice"},
		{"unknown webhook field", hook + "    secrt: x\n", "secrt"},
		{"both secrets", hook + "    secret: a\n    secret_file: " + secretFile + "\n", "both set"},
		{"missing secret file", hook + "    secret_file: " + filepath.Join(dir, "nope") + "\n", "no such file"},
		{"empty secret file", hook + "    secret_file: " + empty + "\n", "is empty"},
		{"bad url", "webhooks:\n  - name: ops\n    url: hooks.example.com\n", "not an http(s) URL"},
		{"thresholds alone", "thresholds:\n  - group: laptops\n    min_compliant_percent: 90\n", "without a webhook"},
		{"bad threshold", hook + "thresholds:\n  - group: laptops\n    min_compliant_percent: 190\n", "min_compliant_percent"},
		{"bad interval", hook + "webhook_interval: soon\n", "webhook_interval"},
		{"negative attempts", hook + "webhook_max_attempts: -1\n", "webhook_max_attempts"},
		{"bad public url", hook + "public_url: evident.example.com\n", "public_url"},
		{"bad yaml", "listen: [\n", "yaml"},
		{"oidc", "public_url: https://evident.example.com/\noidc:\n  issuer: https://login.example.com\n  client_id: evident\n  client_secret_file: " + secretFile + "\n  admin_groups: [it]\n", ""},
		{"oidc without a callback", "oidc:\n  issuer: https://login.example.com\n  client_id: evident\n  admin_groups: [it]\n", "set public_url"},
		{"oidc without groups", "public_url: https://e.example.com\noidc:\n  issuer: https://login.example.com\n  client_id: evident\n", "nobody could log in"},
		{"oidc two secrets", "public_url: https://e.example.com\noidc:\n  issuer: https://l.example.com\n  client_id: e\n  client_secret: a\n  client_secret_file: " + secretFile + "\n  admin_groups: [it]\n", "both set"},
		{"oidc unknown key", "oidc:\n  issuer: https://l.example.com\n  admin_group: [it]\n", "admin_group"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs, _, _ := runFlags()
			rf, err := parseRunFile([]byte(tt.yaml), fs)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("parseRunFile = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "oidc" {
				if c := rf.oidc; c == nil || c.RedirectURL != "https://evident.example.com/oidc/callback" || c.ClientSecret != "s3cret-from-file" || c.GroupsClaim != "groups" {
					t.Errorf("oidc %+v", rf.oidc)
				}
			}
			if tt.name == "webhook" {
				if rf.webhooks == nil || len(rf.webhooks.Endpoints) != 1 || string(rf.webhooks.Endpoints[0].Secret) != "s3cret-from-file" || rf.webhooks.Endpoints[0].Format != "json" {
					t.Errorf("webhooks %+v", rf.webhooks)
				}
			}
		})
	}
}

// The file fills what the command line did not set; the command line wins.
func TestRunFileApply(t *testing.T) {
	fs, listen, every := runFlags()
	if err := fs.Parse([]string{"--listen", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	rf, err := parseRunFile([]byte("listen: 0.0.0.0:8443\nrescore_interval: 10m\n"), fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := rf.apply(fs); err != nil {
		t.Fatal(err)
	}
	if *listen != "127.0.0.1:1" || *every != 10*time.Minute {
		t.Errorf("listen %q, rescore interval %s; want the command line's listen and the file's interval", *listen, *every)
	}
	fs, _, _ = runFlags()
	rf, err = parseRunFile([]byte("rescore_interval: often\n"), fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := rf.apply(fs); err == nil || !strings.Contains(err.Error(), "rescore-interval") {
		t.Errorf("a bad value: %v", err)
	}
}

// A store in the file and another in EVIDENT_STORE (where the packaged
// unit's /etc/default file puts it) is refused, not silently overridden.
func TestRunFileAgainstEnvironment(t *testing.T) {
	for _, tt := range []struct {
		env, file, want string
	}{
		{"", "store: postgres://a@db/evident\n", ""},
		{"postgres://a@db/evident", "store: postgres://a@db/evident\n", ""},
		{"postgres://a@db/evident", "listen: :1\n", ""},
		{"postgres://a@db/evident", "store: postgres://b@other/evident\n", "EVIDENT_STORE"},
	} {
		t.Setenv("EVIDENT_STORE", tt.env)
		fs, _, _ := runFlags()
		rf, err := parseRunFile([]byte(tt.file), fs)
		if err != nil {
			t.Fatal(err)
		}
		err = rf.apply(fs)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("env %q, file %q: %v, want %q", tt.env, tt.file, err, tt.want)
		}
	}
}

func TestRunFileLimits(t *testing.T) {
	fs, _, _ := runFlags()
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", maxConfigBytes)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readRunFile(big, fs); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
	if _, err := readRunFile(filepath.Join(t.TempDir(), "none.yaml"), fs); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("missing file: %v", err)
	}
}
