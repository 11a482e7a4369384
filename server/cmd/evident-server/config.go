package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/evident-dev/evident/server/web"
	"github.com/evident-dev/evident/server/webhook"
)

// maxConfigBytes bounds the configuration file.
const maxConfigBytes = 256 << 10

// runFile is what `run --config FILE` reads (server.yaml; the packages
// install /etc/evident/server.yaml): any flag of run by its name (with "_"
// or "-"), plus the alerting settings no flag carries. A flag given on the
// command line wins over the file.
type runFile struct {
	flags    map[string]string
	webhooks *webhook.Config
	oidc     *web.OIDCConfig
}

// webhookFile is one entry of the file's webhooks list.
type webhookFile struct {
	Name       string   `yaml:"name"`
	URL        string   `yaml:"url"`
	Format     string   `yaml:"format"`
	Secret     string   `yaml:"secret"`
	SecretFile string   `yaml:"secret_file"`
	Events     []string `yaml:"events"`
}

// oidcFile is the file's oidc section: single sign-on for the web UI.
type oidcFile struct {
	Issuer           string   `yaml:"issuer"`
	ClientID         string   `yaml:"client_id"`
	ClientSecret     string   `yaml:"client_secret"`
	ClientSecretFile string   `yaml:"client_secret_file"`
	RedirectURL      string   `yaml:"redirect_url"`
	Scopes           []string `yaml:"scopes"`
	GroupsClaim      string   `yaml:"groups_claim"`
	AdminGroups      []string `yaml:"admin_groups"`
	AuditorGroups    []string `yaml:"auditor_groups"`
	Label            string   `yaml:"label"`
}

type thresholdFile struct {
	Group        string  `yaml:"group"`
	MinCompliant float64 `yaml:"min_compliant_percent"`
}

type alertsFile struct {
	Webhooks   []webhookFile   `yaml:"webhooks"`
	Thresholds []thresholdFile `yaml:"thresholds"`
	// PublicURL is the web UI's address as people reach it: messages
	// link device pages under it.
	PublicURL string `yaml:"public_url"`
	// Delivery tuning (webhook.Config): how often due alerts are sent,
	// the first retry's wait (doubling up to an hour) and the attempts
	// before giving up.
	Interval    string    `yaml:"webhook_interval"`
	RetryBase   string    `yaml:"webhook_retry_base"`
	MaxAttempts int       `yaml:"webhook_max_attempts"`
	OIDC        *oidcFile `yaml:"oidc"`
}

// alertKeys are the file's keys that are not flags.
var alertKeys = map[string]bool{"webhooks": true, "thresholds": true, "public_url": true,
	"webhook_interval": true, "webhook_retry_base": true, "webhook_max_attempts": true, "oidc": true}

// readRunFile reads and checks a server.yaml against the flags of fs.
func readRunFile(path string, fs *flag.FlagSet) (*runFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	if len(b) > maxConfigBytes {
		return nil, fmt.Errorf("--config %s: larger than %d KiB", path, maxConfigBytes>>10)
	}
	rf, err := parseRunFile(b, fs)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	return rf, nil
}

func parseRunFile(b []byte, fs *flag.FlagSet) (*runFile, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	rf := &runFile{flags: map[string]string{}}
	if len(doc.Content) == 0 {
		return rf, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return rf, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of settings", root.Line)
	}
	var alerts yaml.Node
	alerts.Kind = yaml.MappingNode
	for i := 0; i+1 < len(root.Content); i += 2 {
		kn, vn := root.Content[i], root.Content[i+1]
		key := kn.Value
		if alertKeys[key] {
			alerts.Content = append(alerts.Content, kn, vn)
			continue
		}
		name := strings.ReplaceAll(key, "_", "-")
		if name == "config" || fs.Lookup(name) == nil {
			return nil, fmt.Errorf("line %d: unknown setting %q (a flag of `evident-server run`, or webhooks, thresholds, public_url)", kn.Line, key)
		}
		if vn.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: %s: want a single value", vn.Line, key)
		}
		if _, dup := rf.flags[name]; dup {
			return nil, fmt.Errorf("line %d: %s is set twice", kn.Line, key)
		}
		rf.flags[name] = vn.Value
	}
	if len(alerts.Content) == 0 {
		return rf, nil
	}
	raw, err := yaml.Marshal(&alerts)
	if err != nil {
		return nil, err
	}
	var af alertsFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&af); err != nil {
		return nil, err
	}
	wc := &webhook.Config{WebURL: af.PublicURL, MaxAttempts: af.MaxAttempts}
	for _, d := range []struct {
		name, v string
		to      *time.Duration
	}{{"webhook_interval", af.Interval, &wc.Every}, {"webhook_retry_base", af.RetryBase, &wc.RetryBase}} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%s %q: want a positive duration such as 30s", d.name, d.v)
		}
		*d.to = v
	}
	if af.MaxAttempts < 0 {
		return nil, fmt.Errorf("webhook_max_attempts %d: want a positive number", af.MaxAttempts)
	}
	if af.PublicURL != "" {
		if u, err := url.Parse(af.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("public_url %q: want the web UI's http(s) address", af.PublicURL)
		}
	}
	for _, w := range af.Webhooks {
		e := webhook.Endpoint{Name: w.Name, URL: w.URL, Format: w.Format, Events: w.Events, Secret: []byte(w.Secret)}
		if w.SecretFile != "" {
			if w.Secret != "" {
				return nil, fmt.Errorf("webhook %q: secret and secret_file both set", w.Name)
			}
			s, err := os.ReadFile(w.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("webhook %q: %w", w.Name, err)
			}
			e.Secret = bytes.TrimSpace(s)
			if len(e.Secret) == 0 {
				return nil, fmt.Errorf("webhook %q: secret_file %s is empty", w.Name, w.SecretFile)
			}
		}
		wc.Endpoints = append(wc.Endpoints, e)
	}
	for _, t := range af.Thresholds {
		wc.Thresholds = append(wc.Thresholds, webhook.Threshold{Group: t.Group, MinCompliant: t.MinCompliant})
	}
	if len(wc.Thresholds) > 0 && len(wc.Endpoints) == 0 {
		return nil, errors.New("thresholds without a webhook to tell")
	}
	if err := wc.Validate(); err != nil {
		return nil, err
	}
	rf.webhooks = wc
	if o := af.OIDC; o != nil {
		secret := o.ClientSecret
		if o.ClientSecretFile != "" {
			if secret != "" {
				return nil, errors.New("oidc: client_secret and client_secret_file both set")
			}
			b, err := os.ReadFile(o.ClientSecretFile)
			if err != nil {
				return nil, fmt.Errorf("oidc: %w", err)
			}
			secret = string(bytes.TrimSpace(b))
		}
		redirect := o.RedirectURL
		if redirect == "" && af.PublicURL != "" {
			redirect = strings.TrimSuffix(af.PublicURL, "/") + "/oidc/callback"
		}
		c := &web.OIDCConfig{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret, RedirectURL: redirect, Scopes: o.Scopes,
			GroupsClaim: o.GroupsClaim, AdminGroups: o.AdminGroups, AuditorGroups: o.AuditorGroups, Label: o.Label}
		if err := c.Validate(); err != nil {
			if redirect == "" {
				return nil, fmt.Errorf("%w (set public_url, or oidc.redirect_url)", err)
			}
			return nil, err
		}
		rf.oidc = c
	}
	return rf, nil
}

// fromEnv are the flags whose default comes from the environment: a file
// setting one too would silently win over the environment the command-line
// tools (secret create, token create) follow, so the two must agree.
var fromEnv = map[string]string{"data-dir": "EVIDENT_DATA_DIR", "store": "EVIDENT_STORE"}

// apply sets on fs the file's values of the flags the command line did
// not set.
func (rf *runFile) apply(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range rf.flags {
		if set[name] {
			continue
		}
		if env := fromEnv[name]; env != "" && os.Getenv(env) != "" && os.Getenv(env) != v {
			return fmt.Errorf("--config: %s is set both in the file and in %s, to different values: keep one", strings.ReplaceAll(name, "-", "_"), env)
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("--config: %s: %w", name, err)
		}
	}
	return nil
}
