package packaging

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// msiUpgradeCode is the agent's fixed UpgradeCode (installers/windows/evident-agent.wxs).
// It must never change: every installed agent is upgraded through it.
const msiUpgradeCode = "{AF53E011-4B2D-425A-BD22-CF5F4499DF9B}"

// Windows Installer bit values the checks use.
const (
	// ServiceInstall.ServiceType, StartType, ErrorControl.
	msiServiceOwnProcess = 0x10
	msiServiceAutoStart  = 2
	msiErrorNormal       = 1

	// ServiceControl.Event (msidbServiceControlEvent*).
	msiEventInstallStart   = 0x001
	msiEventInstallStop    = 0x002
	msiEventInstallDelete  = 0x008
	msiEventUninstallStart = 0x010
	msiEventUninstallStop  = 0x020
	msiEventUninstallDel   = 0x080

	// CustomAction.Type (msidbCustomActionType*).
	msiCAExeFile       = 18 // executable installed with the product (source = File key)
	msiCABaseMask      = 0x3f
	msiCAContinue      = 0x40
	msiCAAsync         = 0x80
	msiCAInScript      = 0x400
	msiCANoImpersonate = 0x800
	msiCAHideTarget    = 0x2000

	// Upgrade.Attributes (msidbUpgradeAttributes*).
	msiUpgradeMigrateFeatures  = 0x001
	msiUpgradeOnlyDetect       = 0x002
	msiUpgradeVersionMinIncl   = 0x100
	msiUpgradeVersionMaxIncl   = 0x200
	msiComponent64bit          = 0x100 // Component.Attributes msidbComponentAttributes64bit
	msiConfigWriteAction       = "EvidentConfigWrite"
	msiAgentServiceName        = "evident-agent"
	msiAgentServiceDisplayName = "Evident Agent"
)

// msiTables are the tables of one MSI as msiinfo exports them: table name ->
// rows, each row column name -> value.
type msiTables map[string][]map[string]string

// msiCheckedTables are the tables msiCheck reads.
var msiCheckedTables = []string{
	"ServiceInstall", "ServiceControl", "Property", "Upgrade", "CustomAction",
	"InstallExecuteSequence", "LaunchCondition", "File", "Component", "Directory",
}

// msiParseExport parses `msiinfo export FILE TABLE`: tab-separated, CRLF
// lines; line 1 the column names, line 2 their types, line 3 the table name
// and its key columns; then one line per row.
func msiParseExport(out string) ([]map[string]string, error) {
	lines := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n")
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 3 {
		return nil, fmt.Errorf("export has %d lines, want at least the 3 header lines", len(lines))
	}
	cols := strings.Split(lines[0], "\t")
	if n := len(strings.Split(lines[1], "\t")); n != len(cols) {
		return nil, fmt.Errorf("%d column names but %d column types", len(cols), n)
	}
	var rows []map[string]string
	for i, line := range lines[3:] {
		f := strings.Split(line, "\t")
		if len(f) != len(cols) {
			return nil, fmt.Errorf("row %d has %d fields, want %d: %q", i+1, len(f), len(cols), line)
		}
		row := make(map[string]string, len(cols))
		for j, c := range cols {
			row[c] = f[j]
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func TestMSIParseExport(t *testing.T) {
	good := "Property\tValue\r\ns72\tl0\r\nProperty\tProperty\r\nALLUSERS\t1\r\nProductVersion\t1.2.3"
	rows, err := msiParseExport(good)
	if err != nil || len(rows) != 2 || rows[1]["Property"] != "ProductVersion" || rows[1]["Value"] != "1.2.3" {
		t.Fatalf("msiParseExport(good) = %v, %v", rows, err)
	}
	for name, bad := range map[string]string{
		"truncated header": "Property\tValue\r\ns72\tl0\r\n",
		"short row":        "Property\tValue\r\ns72\tl0\r\nProperty\tProperty\r\nALLUSERS\r\n",
		"type mismatch":    "Property\tValue\r\ns72\r\nProperty\tProperty\r\n",
	} {
		if _, err := msiParseExport(bad); err == nil {
			t.Errorf("%s: msiParseExport accepted %q", name, bad)
		}
	}
}

// msiExport reads the tables of an MSI with msiinfo.
func msiExport(t *testing.T, msi string) msiTables {
	t.Helper()
	tables := msiTables{}
	for _, name := range msiCheckedTables {
		out, err := exec.Command("msiinfo", "export", msi, name).Output()
		if err != nil {
			t.Fatalf("msiinfo export %s %s: %v", filepath.Base(msi), name, err)
		}
		rows, err := msiParseExport(string(out))
		if err != nil {
			t.Fatalf("table %s: %v", name, err)
		}
		tables[name] = rows
	}
	return tables
}

// msiClone deep-copies tables so a failure case can change one value.
func (tb msiTables) msiClone() msiTables {
	c := msiTables{}
	for name, rows := range tb {
		for _, r := range rows {
			m := make(map[string]string, len(r))
			for k, v := range r {
				m[k] = v
			}
			c[name] = append(c[name], m)
		}
	}
	return c
}

// msiRow returns the first row of table whose column col equals val.
func (tb msiTables) msiRow(table, col, val string) map[string]string {
	for _, r := range tb[table] {
		if r[col] == val {
			return r
		}
	}
	return nil
}

func (tb msiTables) msiProperty(name string) string {
	if r := tb.msiRow("Property", "Property", name); r != nil {
		return r["Value"]
	}
	return ""
}

func msiInt(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1 << 30 // never matches an expected value or bit
	}
	return n
}

func msiHasItem(list, item string) bool {
	for _, x := range strings.Split(list, ";") {
		if x == item {
			return true
		}
	}
	return false
}

var msiGUID = regexp.MustCompile(`^\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}$`)

// msiCheck returns every way the tables differ from what the agent's MSI
// must contain (empty when they are right).
func msiCheck(tb msiTables, productVersion string) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }

	// Properties.
	for _, p := range []struct{ name, want string }{
		{"UpgradeCode", msiUpgradeCode},
		{"ProductVersion", productVersion},
		{"Manufacturer", "Evident"},
		{"ProductName", "Evident Agent"},
		{"ALLUSERS", "1"},
	} {
		if got := tb.msiProperty(p.name); got != p.want {
			fail("Property %s = %q, want %q", p.name, got, p.want)
		}
	}
	if pc := tb.msiProperty("ProductCode"); !msiGUID.MatchString(pc) {
		fail("ProductCode %q is not a GUID", pc)
	}
	for _, p := range []struct{ prop, item string }{
		{"SecureCustomProperties", "SERVER_URL"},
		{"SecureCustomProperties", "ENROLL_SECRET"},
		{"SecureCustomProperties", "WIX_UPGRADE_DETECTED"},
		{"SecureCustomProperties", "WIX_DOWNGRADE_DETECTED"},
		{"MsiHiddenProperties", "ENROLL_SECRET"},
	} {
		if v := tb.msiProperty(p.prop); !msiHasItem(v, p.item) {
			fail("Property %s = %q does not list %s", p.prop, v, p.item)
		}
	}

	// The agent exe in ProgramFiles64Folder\Evident, in a 64-bit component.
	exe := tb.msiRow("File", "FileName", "evident-agent.exe")
	if exe == nil {
		// Long names may be stored as "SHORT~1.EXE|long name.exe".
		for _, r := range tb["File"] {
			if strings.HasSuffix(r["FileName"], "|evident-agent.exe") {
				exe = r
			}
		}
	}
	var exeKey string
	if exe == nil {
		fail("File table has no evident-agent.exe")
	} else {
		exeKey = exe["File"]
		comp := tb.msiRow("Component", "Component", exe["Component_"])
		if comp == nil {
			fail("component %q of the exe is missing", exe["Component_"])
		} else {
			if msiInt(comp["Attributes"])&msiComponent64bit == 0 {
				fail("component %s attributes %s lack the 64-bit bit", comp["Component"], comp["Attributes"])
			}
			dir := tb.msiRow("Directory", "Directory", comp["Directory_"])
			if dir == nil || dir["DefaultDir"] != "Evident" || dir["Directory_Parent"] != "ProgramFiles64Folder" {
				fail("exe directory %v, want Evident under ProgramFiles64Folder", dir)
			}
		}
	}

	// The service.
	if n := len(tb["ServiceInstall"]); n != 1 {
		fail("ServiceInstall has %d rows, want 1", n)
	}
	if si := tb.msiRow("ServiceInstall", "Name", msiAgentServiceName); si == nil {
		fail("no ServiceInstall row for %s", msiAgentServiceName)
	} else {
		for _, c := range []struct{ col, want string }{
			{"DisplayName", msiAgentServiceDisplayName},
			{"ServiceType", strconv.Itoa(msiServiceOwnProcess)},
			{"StartType", strconv.Itoa(msiServiceAutoStart)},
			{"ErrorControl", strconv.Itoa(msiErrorNormal)},
			{"Arguments", "run"},
		} {
			if si[c.col] != c.want {
				fail("ServiceInstall %s = %q, want %q", c.col, si[c.col], c.want)
			}
		}
		// An empty StartName is LocalSystem too.
		if a := si["StartName"]; a != "" && a != "LocalSystem" {
			fail("service account %q, want LocalSystem", a)
		}
		if si["Description"] == "" {
			fail("service has no description")
		}
		if exe != nil && si["Component_"] != exe["Component_"] {
			fail("service component %q is not the exe's %q", si["Component_"], exe["Component_"])
		}
	}
	if sc := tb.msiRow("ServiceControl", "Name", msiAgentServiceName); sc == nil {
		fail("no ServiceControl row for %s", msiAgentServiceName)
	} else {
		ev := msiInt(sc["Event"])
		for _, e := range []struct {
			bit  int
			want bool
			what string
		}{
			{msiEventInstallStart, true, "start on install"},
			{msiEventInstallStop, true, "stop on install (upgrades)"},
			{msiEventUninstallStop, true, "stop on uninstall"},
			{msiEventUninstallDel, true, "remove on uninstall"},
			{msiEventInstallDelete, false, "remove on install"},
			{msiEventUninstallStart, false, "start on uninstall"},
		} {
			if (ev&e.bit != 0) != e.want {
				fail("ServiceControl event %d: %s should be %v", ev, e.what, e.want)
			}
		}
		if sc["Wait"] != "1" {
			fail("ServiceControl Wait = %q, want 1", sc["Wait"])
		}
	}

	// Major upgrade: older versions are replaced, newer ones refuse the install.
	var up, down map[string]string
	for _, r := range tb["Upgrade"] {
		if r["UpgradeCode"] != msiUpgradeCode {
			fail("Upgrade row for a foreign UpgradeCode %s", r["UpgradeCode"])
		}
		switch r["ActionProperty"] {
		case "WIX_UPGRADE_DETECTED":
			up = r
		case "WIX_DOWNGRADE_DETECTED":
			down = r
		}
	}
	if up == nil {
		fail("no Upgrade row detecting older versions")
	} else {
		a := msiInt(up["Attributes"])
		if up["VersionMin"] != "" || up["VersionMax"] != productVersion || a&msiUpgradeOnlyDetect != 0 ||
			a&msiUpgradeMigrateFeatures == 0 || a&msiUpgradeVersionMaxIncl == 0 {
			fail("upgrade row %v: want versions up to %s inclusive removed", up, productVersion)
		}
	}
	if down == nil {
		fail("no Upgrade row detecting newer versions")
	} else {
		a := msiInt(down["Attributes"])
		if down["VersionMin"] != productVersion || down["VersionMax"] != "" || a&msiUpgradeOnlyDetect == 0 ||
			a&msiUpgradeVersionMinIncl != 0 {
			fail("downgrade row %v: want newer than %s detected only", down, productVersion)
		}
	}
	if tb.msiRow("LaunchCondition", "Condition", "NOT WIX_DOWNGRADE_DETECTED") == nil {
		fail("no launch condition refusing downgrades")
	}

	// The config-write custom action.
	seq := map[string]int{}
	for _, r := range tb["InstallExecuteSequence"] {
		seq[r["Action"]] = msiInt(r["Sequence"])
	}
	if ca := tb.msiRow("CustomAction", "Action", msiConfigWriteAction); ca == nil {
		fail("no %s custom action", msiConfigWriteAction)
	} else {
		typ := msiInt(ca["Type"])
		for _, b := range []struct {
			bit  int
			want bool
			what string
		}{
			{msiCAInScript, true, "deferred"},
			{msiCANoImpersonate, true, "no-impersonate"},
			{msiCAHideTarget, true, "hide-target"},
			{msiCAContinue, false, "ignore-failure"},
			{msiCAAsync, false, "async"},
		} {
			if (typ&b.bit != 0) != b.want {
				fail("custom action type %d: %s should be %v", typ, b.what, b.want)
			}
		}
		if typ&msiCABaseMask != msiCAExeFile {
			fail("custom action type %d is not an installed-exe action (18)", typ)
		}
		if exeKey != "" && ca["Source"] != exeKey {
			fail("custom action runs %q, want the installed exe %q", ca["Source"], exeKey)
		}
		for _, want := range []string{"config write", `--server "[SERVER_URL]"`, `--enroll-secret "[ENROLL_SECRET]"`} {
			if !strings.Contains(ca["Target"], want) {
				fail("custom action command %q lacks %q", ca["Target"], want)
			}
		}
	}
	if row := tb.msiRow("InstallExecuteSequence", "Action", msiConfigWriteAction); row == nil {
		fail("%s is not scheduled", msiConfigWriteAction)
	} else {
		for _, w := range []string{"SERVER_URL", "ENROLL_SECRET", "NOT REMOVE"} {
			if !strings.Contains(row["Condition"], w) {
				fail("%s condition %q lacks %s", msiConfigWriteAction, row["Condition"], w)
			}
		}
		files, cw, start := seq["InstallFiles"], seq[msiConfigWriteAction], seq["StartServices"]
		if files == 0 || start == 0 || !(files < cw && cw < start) {
			fail("%s at %d, want after InstallFiles (%d) and before StartServices (%d)", msiConfigWriteAction, cw, files, start)
		}
	}
	for _, a := range []string{"InstallServices", "StartServices", "StopServices", "DeleteServices", "RemoveExistingProducts", "FindRelatedProducts"} {
		if seq[a] == 0 {
			fail("standard action %s is not scheduled", a)
		}
	}
	return bad
}

// msiBuild runs build-msi.sh and returns the MSI's path and the script's output.
func msiBuild(t *testing.T, dir string, env []string, args ...string) (string, string, error) {
	t.Helper()
	out := filepath.Join(dir, "evident-agent.msi")
	cmd := exec.Command(filepath.Join(repoRoot(t), "installers", "windows", "build-msi.sh"),
		append(args, "--out", out)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	return out, string(b), err
}

// msiNeedTools skips (fails under CI) without the MSI tools.
func msiNeedTools(t *testing.T, extra ...string) {
	t.Helper()
	for _, tool := range append([]string{"wixl", "msiinfo", "msibuild"}, extra...) {
		needTool(t, tool)
	}
}

// msiAgent is the windows/amd64 agent the MSIs package.
func msiAgent(t *testing.T) string {
	t.Helper()
	return buildAgent(t, "windows", "amd64", "1.2.3")
}

func TestMSITables(t *testing.T) {
	msiNeedTools(t)
	exe := msiAgent(t)
	start := time.Now()
	msi, out, err := msiBuild(t, t.TempDir(), nil, "--version", "1.2.3", "--binary", exe)
	if err != nil {
		t.Fatalf("build-msi.sh: %v\n%s", err, out)
	}
	t.Logf("MSI built in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	tables := msiExport(t, msi)
	if bad := msiCheck(tables, "1.2.3"); len(bad) > 0 {
		t.Fatalf("the MSI is wrong:\n%s", strings.Join(bad, "\n"))
	}
	if sum := run(t, "", "msiinfo", "suminfo", msi); !strings.Contains(sum, "Template: x64;") {
		t.Errorf("summary information is not for x64:\n%s", sum)
	}

	// The checks above must be able to fail: each broken copy is rejected.
	for _, tc := range []struct {
		name   string
		mutate func(msiTables)
	}{
		{"manual start", func(tb msiTables) { tb.msiRow("ServiceInstall", "Name", msiAgentServiceName)["StartType"] = "3" }},
		{"shared process", func(tb msiTables) { tb.msiRow("ServiceInstall", "Name", msiAgentServiceName)["ServiceType"] = "32" }},
		{"no run argument", func(tb msiTables) { tb.msiRow("ServiceInstall", "Name", msiAgentServiceName)["Arguments"] = "" }},
		{"other account", func(tb msiTables) {
			tb.msiRow("ServiceInstall", "Name", msiAgentServiceName)["StartName"] = `NT AUTHORITY\LocalService`
		}},
		{"no stop on upgrade", func(tb msiTables) {
			tb.msiRow("ServiceControl", "Name", msiAgentServiceName)["Event"] = strconv.Itoa(msiEventInstallStart | msiEventUninstallStop | msiEventUninstallDel)
		}},
		{"new UpgradeCode", func(tb msiTables) {
			tb.msiRow("Property", "Property", "UpgradeCode")["Value"] = "{00000000-0000-0000-0000-000000000000}"
		}},
		{"other version", func(tb msiTables) { tb.msiRow("Property", "Property", "ProductVersion")["Value"] = "1.2.4" }},
		{"secret not secure", func(tb msiTables) {
			tb.msiRow("Property", "Property", "SecureCustomProperties")["Value"] = "WIX_DOWNGRADE_DETECTED;WIX_UPGRADE_DETECTED;SERVER_URL"
		}},
		{"secret not hidden", func(tb msiTables) { tb.msiRow("Property", "Property", "MsiHiddenProperties")["Value"] = "" }},
		{"downgrade allowed", func(tb msiTables) { tb["LaunchCondition"] = nil }},
		{"downgrade row removes", func(tb msiTables) {
			tb.msiRow("Upgrade", "ActionProperty", "WIX_DOWNGRADE_DETECTED")["Attributes"] = strconv.Itoa(msiUpgradeMigrateFeatures)
		}},
		{"immediate action", func(tb msiTables) {
			tb.msiRow("CustomAction", "Action", msiConfigWriteAction)["Type"] = strconv.Itoa(msiCAExeFile)
		}},
		{"target logged", func(tb msiTables) {
			tb.msiRow("CustomAction", "Action", msiConfigWriteAction)["Type"] = strconv.Itoa(msiCAExeFile | msiCAInScript | msiCANoImpersonate)
		}},
		{"impersonated", func(tb msiTables) {
			tb.msiRow("CustomAction", "Action", msiConfigWriteAction)["Type"] = strconv.Itoa(msiCAExeFile | msiCAInScript | msiCAHideTarget)
		}},
		{"secret not passed", func(tb msiTables) {
			tb.msiRow("CustomAction", "Action", msiConfigWriteAction)["Target"] = `config write --server "[SERVER_URL]"`
		}},
		{"runs after start", func(tb msiTables) {
			tb.msiRow("InstallExecuteSequence", "Action", msiConfigWriteAction)["Sequence"] = "5950"
		}},
		{"runs before files", func(tb msiTables) {
			tb.msiRow("InstallExecuteSequence", "Action", msiConfigWriteAction)["Sequence"] = "3999"
		}},
		{"runs on uninstall", func(tb msiTables) {
			tb.msiRow("InstallExecuteSequence", "Action", msiConfigWriteAction)["Condition"] = "SERVER_URL AND ENROLL_SECRET"
		}},
		{"32-bit component", func(tb msiTables) { tb["Component"][0]["Attributes"] = "0" }},
	} {
		t.Run("rejects/"+tc.name, func(t *testing.T) {
			broken := tables.msiClone()
			tc.mutate(broken)
			if bad := msiCheck(broken, "1.2.3"); len(bad) == 0 {
				t.Errorf("msiCheck accepted an MSI with %s", tc.name)
			}
		})
	}
}

// TestMSIVersion checks how build-msi.sh turns package versions into a
// Windows Installer ProductVersion (a.b.c, a and b <= 255, c <= 65535).
func TestMSIVersion(t *testing.T) {
	msiNeedTools(t)
	exe := msiAgent(t)
	for _, tc := range []struct {
		args []string
		want string // "" = the build must fail
	}{
		{[]string{"--version", "2.5.17"}, "2.5.17"},
		{[]string{"--version", "0.0.0~git42.g1a2b3c4"}, "0.0.42"},
		{[]string{"--version", "1.4.0+3.g1a2b3c4"}, "1.4.0"},
		{[]string{"--version", "v2.0.1-rc1"}, "2.0.1"},
		{[]string{"--version", "anything", "--msi-version", "3.1.4"}, "3.1.4"},
		{[]string{"--version", "255.255.65535"}, "255.255.65535"},
		{[]string{"--version", "256.0.0"}, ""},
		{[]string{"--version", "1.2.65536"}, ""},
		{[]string{"--version", "1.2"}, ""},
		{[]string{"--version", "nightly"}, ""},
		{[]string{"--version", "1.2.3", "--msi-version", "1.2.3.4"}, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			msi, out, err := msiBuild(t, t.TempDir(), nil, append(tc.args, "--binary", exe)...)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("build-msi.sh accepted %v:\n%s", tc.args, out)
				}
				if _, serr := os.Stat(msi); serr == nil {
					t.Errorf("a failed build left %s behind", msi)
				}
				return
			}
			if err != nil {
				t.Fatalf("build-msi.sh: %v\n%s", err, out)
			}
			if got := msiExport(t, msi).msiProperty("ProductVersion"); got != tc.want {
				t.Errorf("ProductVersion = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMSIUpgradeCodeStable(t *testing.T) {
	msiNeedTools(t)
	exe := msiAgent(t)
	var codes, products []string
	for _, v := range []string{"1.2.3", "1.3.0"} {
		msi, out, err := msiBuild(t, t.TempDir(), nil, "--version", v, "--binary", exe)
		if err != nil {
			t.Fatalf("build-msi.sh %s: %v\n%s", v, err, out)
		}
		tb := msiExport(t, msi)
		if got := tb.msiProperty("ProductVersion"); got != v {
			t.Fatalf("ProductVersion = %q, want %q", got, v)
		}
		codes = append(codes, tb.msiProperty("UpgradeCode"))
		products = append(products, tb.msiProperty("ProductCode"))
	}
	if codes[0] != msiUpgradeCode || codes[1] != msiUpgradeCode {
		t.Errorf("UpgradeCodes %v, want both %s", codes, msiUpgradeCode)
	}
	if products[0] == products[1] || !msiGUID.MatchString(products[0]) || !msiGUID.MatchString(products[1]) {
		t.Errorf("ProductCodes %v: want two different GUIDs (a major upgrade needs a new one)", products)
	}
}

// msiSigningPair writes a throwaway RSA key and self-signed code-signing
// certificate as PEM files and returns their paths.
func msiSigningPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "Evident test code signing", Organization: []string{"Evident"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// msiVerify runs osslsigncode verify against the test CA.
func msiVerify(msi, caFile string) (string, error) {
	b, err := exec.Command("osslsigncode", "verify", "-CAfile", caFile, "-in", msi).CombinedOutput()
	return string(b), err
}

func TestMSISigned(t *testing.T) {
	msiNeedTools(t, "osslsigncode")
	exe := msiAgent(t)
	dir := t.TempDir()
	certFile, keyFile := msiSigningPair(t, dir)

	signedDir := filepath.Join(dir, "signed")
	unsignedDir := filepath.Join(dir, "unsigned")
	for _, d := range []string{signedDir, unsignedDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	signed, out, err := msiBuild(t, signedDir, []string{"SIGN_CERT=" + certFile, "SIGN_KEY=" + keyFile},
		"--version", "1.2.3", "--binary", exe)
	if err != nil {
		t.Fatalf("signed build: %v\n%s", err, out)
	}
	if v, err := msiVerify(signed, certFile); err != nil || !strings.Contains(v, "Signature verification: ok") {
		t.Fatalf("osslsigncode verify of the signed MSI: %v\n%s", err, v)
	} else if !strings.Contains(v, "Evident Agent") {
		t.Errorf("signature lacks the description \"Evident Agent\":\n%s", v)
	}
	// Signing must not have changed what the package installs.
	if bad := msiCheck(msiExport(t, signed), "1.2.3"); len(bad) > 0 {
		t.Errorf("signed MSI is wrong:\n%s", strings.Join(bad, "\n"))
	}

	// A changed byte in signed content breaks the signature. The service
	// description lives in the string pool, which the signature covers.
	data, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("Collects device posture"))
	if i < 0 {
		t.Fatal("service description not found in the MSI's string pool")
	}
	data[i] ^= 0x01
	tampered := filepath.Join(dir, "tampered.msi")
	if err := os.WriteFile(tampered, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := msiVerify(tampered, certFile); err == nil {
		t.Errorf("osslsigncode verified a tampered MSI:\n%s", v)
	}

	// Without SIGN_CERT/SIGN_KEY the MSI carries no signature.
	unsigned, out, err := msiBuild(t, unsignedDir, []string{"SIGN_CERT=", "SIGN_KEY="}, "--version", "1.2.3", "--binary", exe)
	if err != nil {
		t.Fatalf("unsigned build: %v\n%s", err, out)
	}
	if v, err := msiVerify(unsigned, certFile); err == nil {
		t.Errorf("osslsigncode verified an unsigned MSI:\n%s", v)
	} else if !strings.Contains(strings.ToLower(v), "no signature") {
		t.Errorf("unsigned MSI: verify failed for another reason than a missing signature:\n%s", v)
	}

	// Half a signing configuration is an error, not an unsigned package.
	if _, out, err := msiBuild(t, t.TempDir(), []string{"SIGN_CERT=" + certFile, "SIGN_KEY="},
		"--version", "1.2.3", "--binary", exe); err == nil {
		t.Errorf("build-msi.sh with SIGN_CERT but no SIGN_KEY succeeded:\n%s", out)
	}
}
