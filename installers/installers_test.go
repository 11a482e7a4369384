package installers

import (
	"github.com/evident-dev/evident/agent/config"

	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"howett.net/plist"
)

// The macOS paths of the contract.
const (
	darwinLabel     = "com.evident.agent"
	darwinBinary    = "/usr/local/bin/evident-agent"
	darwinLogDir    = "/Library/Logs/Evident/"
	darwinPlistPath = "Library/LaunchDaemons/com.evident.agent.plist" // in the payload, relative to /
	darwinPlistFile = "darwin/com.evident.agent.plist"
	mobileconfig    = "darwin/evident-agent.mobileconfig"
	appleDoctype    = `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`
)

// managedKeys are the keys the agent reads from the managed preferences
// domain com.evident.agent (and HKLM\SOFTWARE\Policies\Evident\Agent):
// the sample profile cannot drift from what the agent reads.
var managedKeys = config.ManagedKeys()

// launchdKeys are the launchd.plist(5) keys the LaunchDaemon may use; any
// other key is most likely a typo launchd would silently ignore.
var launchdKeys = []string{
	"Label", "ProgramArguments", "RunAtLoad", "KeepAlive", "ThrottleInterval",
	"ProcessType", "LowPriorityIO", "Nice", "StandardOutPath", "StandardErrorPath",
	"ExitTimeOut", "WorkingDirectory", "Umask", "SoftResourceLimits", "HardResourceLimits",
}

// launchdJob is the typed view of the LaunchDaemon.
type launchdJob struct {
	Label             string   `plist:"Label"`
	ProgramArguments  []string `plist:"ProgramArguments"`
	RunAtLoad         bool     `plist:"RunAtLoad"`
	ThrottleInterval  int      `plist:"ThrottleInterval"`
	ProcessType       string   `plist:"ProcessType"`
	StandardOutPath   string   `plist:"StandardOutPath"`
	StandardErrorPath string   `plist:"StandardErrorPath"`
}

// validateLaunchd checks the LaunchDaemon property list against the contract.
func validateLaunchd(data []byte) error {
	if !bytes.Contains(data, []byte(appleDoctype)) {
		return errors.New("not an XML property list with Apple's DOCTYPE")
	}
	var job launchdJob
	format, err := plist.Unmarshal(data, &job)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if format != plist.XMLFormat {
		return fmt.Errorf("format %s, want XML", plist.FormatNames[format])
	}
	var raw map[string]any
	if _, err := plist.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("parse as a dictionary: %w", err)
	}
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	for k := range raw {
		if !slices.Contains(launchdKeys, k) {
			fail("unexpected key %q", k)
		}
	}
	if job.Label != darwinLabel {
		fail("Label %q, want %q", job.Label, darwinLabel)
	}
	if len(job.ProgramArguments) != 2 || job.ProgramArguments[0] != darwinBinary || job.ProgramArguments[1] != "run" {
		fail("ProgramArguments %q, want [%s run]", job.ProgramArguments, darwinBinary)
	}
	if v, ok := raw["RunAtLoad"].(bool); !ok || !v {
		fail("RunAtLoad %v, want true", raw["RunAtLoad"])
	}
	// Restart on failure only: KeepAlive must be {SuccessfulExit: false},
	// not true (which would also restart after a clean stop).
	ka, ok := raw["KeepAlive"].(map[string]any)
	if !ok {
		fail("KeepAlive %v, want a dictionary {SuccessfulExit: false}", raw["KeepAlive"])
	} else if se, ok := ka["SuccessfulExit"].(bool); !ok || se || len(ka) != 1 {
		fail("KeepAlive %v, want exactly {SuccessfulExit: false}", ka)
	}
	if job.ThrottleInterval <= 0 {
		fail("ThrottleInterval %d, want a positive back-off", job.ThrottleInterval)
	}
	if job.ProcessType != "Background" {
		fail("ProcessType %q, want Background", job.ProcessType)
	}
	for name, p := range map[string]string{"StandardOutPath": job.StandardOutPath, "StandardErrorPath": job.StandardErrorPath} {
		if !strings.HasPrefix(p, darwinLogDir) || filepath.Clean(p) != p || len(p) == len(darwinLogDir) {
			fail("%s %q, want a file under %s", name, p, darwinLogDir)
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// validateMobileconfig checks the sample configuration profile: a system
// profile whose payloads have unique UUIDs and identifiers and whose managed
// preferences for com.evident.agent set only keys the agent knows.
func validateMobileconfig(data []byte) error {
	var top map[string]any
	if _, err := plist.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	for k, want := range map[string]string{"PayloadType": "Configuration", "PayloadScope": "System"} {
		if top[k] != want {
			fail("%s %v, want %q", k, top[k], want)
		}
	}
	for _, k := range []string{"PayloadIdentifier", "PayloadDisplayName", "PayloadOrganization", "PayloadDescription"} {
		if s, _ := top[k].(string); s == "" {
			fail("top-level %s is missing", k)
		}
	}
	content, ok := top["PayloadContent"].([]any)
	if !ok || len(content) == 0 {
		return fmt.Errorf("PayloadContent %T is not a non-empty array", top["PayloadContent"])
	}
	payloads := []map[string]any{top}
	for i, c := range content {
		p, ok := c.(map[string]any)
		if !ok {
			return fmt.Errorf("PayloadContent[%d] is a %T, want a dictionary", i, c)
		}
		payloads = append(payloads, p)
	}
	uuids := map[string]bool{}
	ids := map[string]bool{}
	var prefs []map[string]any
	for i, p := range payloads {
		u, _ := p["PayloadUUID"].(string)
		if !uuidRE.MatchString(u) {
			fail("payload %d: PayloadUUID %q is not a UUID", i, u)
		}
		if uuids[strings.ToUpper(u)] {
			fail("payload %d: duplicate PayloadUUID %s", i, u)
		}
		uuids[strings.ToUpper(u)] = true
		id, _ := p["PayloadIdentifier"].(string)
		if id == "" || ids[id] {
			fail("payload %d: PayloadIdentifier %q is empty or not unique", i, id)
		}
		ids[id] = true
		if v, ok := p["PayloadVersion"].(uint64); !ok || v != 1 {
			fail("payload %d: PayloadVersion %v, want integer 1", i, p["PayloadVersion"])
		}
		if i > 0 && p["PayloadType"] == "com.apple.ManagedClient.preferences" {
			prefs = append(prefs, p)
		}
	}
	if len(prefs) != 1 {
		fail("%d com.apple.ManagedClient.preferences payloads, want 1", len(prefs))
	} else if err := validateManagedPrefs(prefs[0]); err != nil {
		fail("%v", err)
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// validateManagedPrefs checks a com.apple.ManagedClient.preferences payload:
// PayloadContent = {com.evident.agent: {Forced: [{mcx_preference_settings: {...}}]}}.
func validateManagedPrefs(p map[string]any) error {
	domains, ok := p["PayloadContent"].(map[string]any)
	if !ok || len(domains) != 1 {
		return fmt.Errorf("managed preferences PayloadContent %v, want one domain", p["PayloadContent"])
	}
	dom, ok := domains[darwinLabel].(map[string]any)
	if !ok {
		return fmt.Errorf("managed preferences target %v, want the domain %s", slices.Sorted(maps.Keys(domains)), darwinLabel)
	}
	forced, ok := dom["Forced"].([]any)
	if !ok || len(forced) != 1 || len(dom) != 1 {
		return fmt.Errorf("domain %s: want exactly one Forced entry, got %v", darwinLabel, dom)
	}
	entry, _ := forced[0].(map[string]any)
	settings, ok := entry["mcx_preference_settings"].(map[string]any)
	if !ok {
		return errors.New("Forced entry has no mcx_preference_settings dictionary")
	}
	var bad []string
	for k := range settings {
		if !slices.Contains(managedKeys, k) {
			bad = append(bad, fmt.Sprintf("unknown managed key %q (the agent reads %v)", k, managedKeys))
		}
	}
	slices.Sort(bad)
	if s, _ := settings["Server"].(string); !regexp.MustCompile(`^[A-Za-z0-9.-]+:[0-9]+$`).MatchString(s) {
		bad = append(bad, fmt.Sprintf("Server %v, want a host:port string", settings["Server"]))
	}
	if s, _ := settings["EnrollSecret"].(string); !strings.HasPrefix(s, "evt1.") {
		bad = append(bad, fmt.Sprintf("EnrollSecret %v, want an evt1. token (placeholder)", settings["EnrollSecret"]))
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLaunchdPlist(t *testing.T) {
	if err := validateLaunchd(readFile(t, darwinPlistFile)); err != nil {
		t.Fatalf("%s: %v", darwinPlistFile, err)
	}
}

func TestMobileconfig(t *testing.T) {
	data := readFile(t, mobileconfig)
	if err := validateMobileconfig(data); err != nil {
		t.Fatalf("%s: %v", mobileconfig, err)
	}
	if !bytes.Contains(data, []byte(appleDoctype)) {
		t.Errorf("%s lacks Apple's plist DOCTYPE", mobileconfig)
	}
}

// TestValidatorsReject proves the checks above can fail: each input is a
// real file with one thing broken.
func TestValidatorsReject(t *testing.T) {
	launchd := string(readFile(t, darwinPlistFile))
	profile := string(readFile(t, mobileconfig))
	// edit replaces old by new in s and fails when old is absent, so a
	// case cannot silently test the unchanged file.
	edit := func(s, old, new string) []byte {
		t.Helper()
		if !strings.Contains(s, old) {
			t.Fatalf("test input lacks %q", old)
		}
		return []byte(strings.Replace(s, old, new, 1))
	}
	uuids := regexp.MustCompile(`<key>PayloadUUID</key>\s*<string>([^<]+)</string>`).FindAllStringSubmatch(profile, -1)
	if len(uuids) < 2 {
		t.Fatalf("%s has %d PayloadUUIDs, want at least 2", mobileconfig, len(uuids))
	}
	for _, tc := range []struct {
		name     string
		validate func([]byte) error
		input    []byte
	}{
		{"launchd truncated", validateLaunchd, []byte(launchd[:len(launchd)/2])},
		{"launchd empty", validateLaunchd, nil},
		{"launchd missing Label", validateLaunchd, edit(launchd, "<key>Label</key>\n\t<string>com.evident.agent</string>\n", "")},
		{"launchd other Label", validateLaunchd, edit(launchd, "<string>com.evident.agent</string>", "<string>com.example.agent</string>")},
		{"launchd other binary", validateLaunchd, edit(launchd, "<string>/usr/local/bin/evident-agent</string>", "<string>/usr/bin/evident-agent</string>")},
		{"launchd no run", validateLaunchd, edit(launchd, "<string>run</string>", "")},
		{"launchd not RunAtLoad", validateLaunchd, edit(launchd, "<key>RunAtLoad</key>\n\t<true/>", "<key>RunAtLoad</key>\n\t<false/>")},
		{"launchd always KeepAlive", validateLaunchd, edit(launchd, "<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>", "<true/>")},
		{"launchd restart on success", validateLaunchd, edit(launchd, "<key>SuccessfulExit</key>\n\t\t<false/>", "<key>SuccessfulExit</key>\n\t\t<true/>")},
		{"launchd no throttle", validateLaunchd, edit(launchd, "<integer>30</integer>", "<integer>0</integer>")},
		{"launchd log elsewhere", validateLaunchd, edit(launchd, "<key>StandardErrorPath</key>\n\t<string>/Library/Logs/Evident/", "<key>StandardErrorPath</key>\n\t<string>/tmp/")},
		{"launchd typo key", validateLaunchd, edit(launchd, "<key>RunAtLoad</key>", "<key>RunAtload</key>")},
		{"launchd environment", validateLaunchd, edit(launchd, "<key>Nice</key>", "<key>EnvironmentVariables</key>\n\t<dict/>\n\t<key>Nice</key>")},
		{"launchd no doctype", validateLaunchd, edit(launchd, appleDoctype, "")},
		{"mobileconfig truncated", validateMobileconfig, []byte(profile[:len(profile)/2])},
		{"mobileconfig unknown key", validateMobileconfig, edit(profile, "<key>LogLevel</key>", "<key>Loglevel</key>")},
		{"mobileconfig file key", validateMobileconfig, edit(profile, "<key>LogLevel</key>", "<key>log_level</key>")},
		{"mobileconfig duplicate UUID", validateMobileconfig, edit(profile, uuids[1][1], uuids[0][1])},
		{"mobileconfig duplicate UUID other case", validateMobileconfig, edit(profile, uuids[1][1], strings.ToLower(uuids[0][1]))},
		{"mobileconfig bad UUID", validateMobileconfig, edit(profile, uuids[1][1], "not-a-uuid")},
		{"mobileconfig other domain", validateMobileconfig, edit(profile, "<key>com.evident.agent</key>", "<key>com.evident.server</key>")},
		{"mobileconfig no Server", validateMobileconfig, edit(profile, "<key>Server</key>\n\t\t\t\t\t\t\t\t<string>evident.example.com:8443</string>", "")},
		{"mobileconfig no EnrollSecret", validateMobileconfig, edit(profile, "<key>EnrollSecret</key>", "<key>MachineID</key>")},
		{"mobileconfig user scope", validateMobileconfig, edit(profile, "<string>System</string>", "<string>User</string>")},
		{"mobileconfig not a profile", validateMobileconfig, edit(profile, "<string>Configuration</string>", "<string>com.apple.ManagedClient.preferences</string>")},
		{"mobileconfig not forced", validateMobileconfig, edit(profile, "<key>Forced</key>", "<key>Set-Once</key>")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.validate(tc.input); err == nil {
				t.Errorf("accepted:\n%s", tc.input)
			} else {
				t.Logf("rejected: %v", err)
			}
		})
	}
}

// TestDistribution checks the productbuild distribution: both architectures,
// macOS 11 or later, one package com.evident.agent.
func TestDistribution(t *testing.T) {
	var d struct {
		Title   string `xml:"title"`
		Options struct {
			HostArchitectures string `xml:"hostArchitectures,attr"`
			Customize         string `xml:"customize,attr"`
		} `xml:"options"`
		OSVersions []struct {
			Min string `xml:"min,attr"`
		} `xml:"volume-check>allowed-os-versions>os-version"`
		Domain struct {
			LocalSystem string `xml:"enable_localSystem,attr"`
			Home        string `xml:"enable_currentUserHome,attr"`
		} `xml:"domains"`
		PkgRefs []struct {
			ID      string `xml:"id,attr"`
			Content string `xml:",chardata"`
		} `xml:"pkg-ref"`
		Choices []struct {
			ID      string `xml:"id,attr"`
			PkgRefs []struct {
				ID string `xml:"id,attr"`
			} `xml:"pkg-ref"`
		} `xml:"choice"`
	}
	if err := xml.Unmarshal(readFile(t, "darwin/distribution.xml"), &d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" {
		t.Error("no title")
	}
	archs := strings.Split(d.Options.HostArchitectures, ",")
	slices.Sort(archs)
	if !slices.Equal(archs, []string{"arm64", "x86_64"}) {
		t.Errorf("hostArchitectures %q, want x86_64,arm64", d.Options.HostArchitectures)
	}
	var osMin string
	if len(d.OSVersions) == 1 {
		osMin = d.OSVersions[0].Min
	}
	if osMin != "11.0" {
		t.Errorf("minimum macOS %q, want 11.0", osMin)
	}
	if d.Domain.LocalSystem != "true" || d.Domain.Home != "false" {
		t.Errorf("domains %+v: want the local system only", d.Domain)
	}
	var refs []string
	for _, r := range d.PkgRefs {
		if strings.TrimSpace(r.Content) != "" {
			refs = append(refs, r.ID)
		}
	}
	if !slices.Equal(refs, []string{darwinLabel}) {
		t.Errorf("packages %v, want [%s]", refs, darwinLabel)
	}
	chosen := false
	for _, c := range d.Choices {
		for _, r := range c.PkgRefs {
			chosen = chosen || r.ID == darwinLabel
		}
	}
	if !chosen {
		t.Errorf("no choice installs %s", darwinLabel)
	}
}

// TestDarwinScripts checks the shell scripts parse and are executable.
func TestDarwinScripts(t *testing.T) {
	for _, name := range []string{
		"darwin/scripts/preinstall", "darwin/scripts/postinstall",
		"darwin/uninstall.sh", "darwin/build-pkg.sh", "windows/build-msi.sh",
	} {
		t.Run(name, func(t *testing.T) {
			fi, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o111 != 0o111 {
				t.Errorf("mode %v, want executable by all", fi.Mode().Perm())
			}
			if !bytes.HasPrefix(readFile(t, name), []byte("#!/bin/sh\n")) {
				t.Error("does not start with #!/bin/sh")
			}
			if out, err := exec.Command("sh", "-n", name).CombinedOutput(); err != nil {
				t.Errorf("sh -n: %v\n%s", err, out)
			}
		})
	}
}

// TestDarwinLayout lays the pkg payload out with build-pkg.sh --layout-only
// and checks every path and mode in it.
func TestDarwinLayout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "evident-agent")
	if err := os.WriteFile(bin, []byte("dummy universal binary\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("./darwin/build-pkg.sh", "--layout-only", root, "--binary", bin).CombinedOutput(); err != nil {
		t.Fatalf("build-pkg.sh --layout-only: %v\n%s", err, out)
	}
	want := map[string]fs.FileMode{
		"usr":                   fs.ModeDir | 0o755,
		"usr/local":             fs.ModeDir | 0o755,
		"usr/local/bin":         fs.ModeDir | 0o755,
		darwinBinary[1:]:        0o755, // the path the LaunchDaemon runs
		"Library":               fs.ModeDir | 0o755,
		"Library/LaunchDaemons": fs.ModeDir | 0o755,
		darwinPlistPath:         0o644,
	}
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		got[filepath.ToSlash(rel)] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, m := range want {
		if got[p] != m {
			t.Errorf("%s: mode %v, want %v", p, got[p], m)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected payload path %s", p)
		}
	}
	for payload, src := range map[string]string{darwinBinary[1:]: bin, darwinPlistPath: darwinPlistFile} {
		if !bytes.Equal(readFile(t, filepath.Join(root, payload)), readFile(t, src)) {
			t.Errorf("%s differs from %s", payload, src)
		}
	}
	// --layout-only without a binary is an error, not an empty payload.
	if out, err := exec.Command("./darwin/build-pkg.sh", "--layout-only", filepath.Join(dir, "empty")).CombinedOutput(); err == nil {
		t.Errorf("build-pkg.sh --layout-only without --binary succeeded:\n%s", out)
	}
}

// TestBuildPkgNeedsMacOS: elsewhere than on a Mac, build-pkg.sh refuses
// with a clear message and writes nothing.
func TestBuildPkgNeedsMacOS(t *testing.T) {
	if runtime.GOOS == "darwin" {
		t.Skip("on macOS build-pkg.sh builds the package")
	}
	out := filepath.Join(t.TempDir(), "evident-agent.pkg")
	cmd := exec.Command("./darwin/build-pkg.sh", "--version", "1.2.3", "--out", out)
	b, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("build-pkg.sh: err %v, want exit status 1\n%s", err, b)
	}
	if want := "build-pkg.sh needs macOS (pkgbuild, productbuild, lipo)"; !strings.Contains(string(b), want) {
		t.Errorf("output %q lacks %q", b, want)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s was written", out)
	}
}
