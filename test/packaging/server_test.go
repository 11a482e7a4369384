//go:build linux

package packaging

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	srvBin     = "/usr/bin/evident-server"
	srvUnit    = "evident-server.service"
	srvUnitIn  = "/usr/lib/systemd/system/evident-server.service"
	srvConf    = "/etc/evident/server.yaml"
	srvData    = "/var/lib/evident-server"
	srvUser    = "evident-server"
	srvConfDir = "/etc/evident-server"
)

// account returns the uid and gid of a user in root's /etc/passwd.
func account(t *testing.T, root, name string) (uid, gid uint32, ok bool) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) >= 7 && p[0] == name {
			u, _ := strconv.ParseUint(p[2], 10, 32)
			g, _ := strconv.ParseUint(p[3], 10, 32)
			if p[6] != "/usr/sbin/nologin" || u >= 1000 {
				t.Errorf("%s: uid %d, shell %s; want a system account without a shell", name, u, p[6])
			}
			return uint32(u), uint32(g), true
		}
	}
	return 0, 0, false
}

// wantOwned checks a path's mode and owner.
func wantOwned(t *testing.T, root, path string, mode os.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, path))
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: %v %d:%d, want %v %d:%d", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}

// unitService reads the [Service] settings of a unit file: each key's
// values in order.
func unitService(t *testing.T, unit string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "[") {
			section = l
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok && section == "[Service]" {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// startAsUnit starts the server inside root the way its installed unit says
// systemd would: as User= (setpriv, which execs, so the process is the
// server), with Environment=, the LoadCredential= files copied to a
// credentials directory only the user can read, and ExecStart= with
// ${CREDENTIALS_DIRECTORY} expanded. The sandboxing directives need a
// running systemd and are checked by systemd-analyze instead
// (TestServerUnitVerifies).
func startAsUnit(t *testing.T, root string) *exec.Cmd {
	t.Helper()
	svc := unitService(t, readIn(t, root, srvUnitIn))
	if len(svc["User"]) != 1 || len(svc["ExecStart"]) != 1 {
		t.Fatalf("unit: User=%q ExecStart=%q", svc["User"], svc["ExecStart"])
	}
	user := svc["User"][0]
	uid, gid, ok := account(t, root, user)
	if !ok {
		t.Fatalf("the unit's User=%s does not exist", user)
	}
	creds := "/run/credentials/" + srvUnit
	if err := os.MkdirAll(filepath.Join(root, "/run/credentials"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, creds), 0o500); err != nil {
		t.Fatal(err)
	}
	for _, lc := range svc["LoadCredential"] {
		name, src, _ := strings.Cut(lc, ":")
		writeIn(t, root, creds+"/"+name, readIn(t, root, src), 0o400)
		if err := os.Chown(filepath.Join(root, creds, name), int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(root, creds), int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "CREDENTIALS_DIRECTORY=" + creds}
	for _, e := range svc["Environment"] {
		env = append(env, strings.Fields(e)...)
	}
	argv := strings.Fields(strings.ReplaceAll(svc["ExecStart"][0], "${CREDENTIALS_DIRECTORY}", creds))
	args := append([]string{root, "setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--inh-caps=-all", "--"}, argv...)
	cmd := exec.Command("chroot", args...)
	cmd.Env = env
	log, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("server log:\n%s", tail(b, 3000))
		}
	})
	return cmd
}

// TestServerDebInstallStartStop: the server deb in a minimal Debian root
// makes its account and directories, enables its unit, starts as the unit
// says (its own account, server.yaml handed over as a credential), serves
// TLS, stops on SIGTERM, upgrades keeping an edited server.yaml, and keeps
// the evidence and the CA when removed and purged.
func TestServerDebInstallStartStop(t *testing.T) {
	needTool(t, "setpriv")
	v1 := buildPackage(t, "server", "deb", "1.0.0")
	v2 := buildPackage(t, "server", "deb", "1.1.0")
	root := debianRoot(t)

	out := mustChroot(t, root, "dpkg", "-i", copyInto(t, root, v1))
	for _, want := range []string{"systemd is not running", "secret create"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	uid, gid, ok := account(t, root, srvUser)
	if !ok {
		t.Fatalf("no %s account after install", srvUser)
	}
	wantMode(t, root, srvBin, 0o755)
	wantMode(t, root, srvUnitIn, 0o644)
	wantMode(t, root, "/etc/evident", os.ModeDir|0o700)
	wantMode(t, root, srvConf, 0o600)
	wantOwned(t, root, srvData, os.ModeDir|0o700, uid, gid)
	wantOwned(t, root, srvConfDir, os.ModeDir|0o750, 0, gid)
	if !enabled(root, srvUnit) {
		t.Error("install did not enable the unit")
	}
	if got := mustChroot(t, root, srvBin, "--version"); !strings.HasPrefix(got, "evident-server 1.0.0") {
		t.Errorf("--version = %q", got)
	}

	// An admin's edit: a port of its own (tests share the host's network).
	conf := readIn(t, root, srvConf)
	edited := strings.Replace(conf, `listen: ":8443"`, `listen: "127.0.0.1:0"`, 1)
	if edited == conf {
		t.Fatalf("server.yaml has no listen line to edit:\n%s", conf)
	}
	writeIn(t, root, srvConf, edited, 0o600)

	srv := startAsUnit(t, root)
	addrFile := filepath.Join(root, srvData, "listen.addr")
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
	}
	if addr == "" {
		t.Fatal("the server did not start listening")
	}
	// It serves TLS with its own CA's certificate.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	if certs := conn.ConnectionState().PeerCertificates; len(certs) == 0 || !strings.Contains(certs[0].Issuer.CommonName, "Evident") {
		t.Errorf("server certificate issuer: %v", certs)
	}
	conn.Close()
	// Everything it wrote is its account's, and private.
	for _, p := range []string{"evident.db", "pki"} {
		fi, err := os.Stat(filepath.Join(root, srvData, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: uid %d mode %v, want %d and private", p, st.Uid, fi.Mode(), uid)
		}
	}
	// The CLI, as the docs say to run it, works on the same store.
	if got := mustChroot(t, root, "setpriv", "--reuid="+srvUser, "--regid="+srvUser, "--init-groups",
		"env", "EVIDENT_DATA_DIR="+srvData, srvBin, "secret", "create", "--label", "first"); !strings.HasPrefix(got, "evt1.") {
		t.Errorf("secret create = %q", got)
	}

	// Stop: SIGTERM (systemctl stop) ends it cleanly, within TimeoutStopSec.
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the server exited with %v on SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop within 30 s of SIGTERM")
	}

	// Upgrade: the edited server.yaml stays; the account and data too.
	mustChroot(t, root, "dpkg", "-i", copyInto(t, root, v2))
	if got := readIn(t, root, srvConf); got != edited {
		t.Errorf("the upgrade replaced the edited server.yaml:\n%s", got)
	}
	if got := mustChroot(t, root, srvBin, "--version"); !strings.HasPrefix(got, "evident-server 1.1.0") {
		t.Errorf("after the upgrade --version = %q", got)
	}
	if u2, _, _ := account(t, root, srvUser); u2 != uid {
		t.Errorf("the upgrade changed the account's uid: %d, was %d", u2, uid)
	}

	// Remove, then purge: the program goes, the evidence and the CA stay.
	mustChroot(t, root, "dpkg", "-r", "evident-server")
	if exists(root, srvBin) || exists(root, srvUnitIn) {
		t.Error("dpkg -r left the program or the unit")
	}
	if !masked(root, srvUnit) {
		t.Error("dpkg -r did not mask the unit")
	}
	out = mustChroot(t, root, "dpkg", "-P", "evident-server")
	if exists(root, srvConf) || exists(root, srvConfDir) || enabled(root, srvUnit) || masked(root, srvUnit) {
		t.Error("dpkg -P left server.yaml, /etc/evident-server or the unit's links")
	}
	if !exists(root, srvData+"/evident.db") || !exists(root, srvData+"/pki") {
		t.Error("dpkg -P deleted the evidence or the CA")
	}
	if !strings.Contains(out, "kept /var/lib/evident-server") {
		t.Errorf("purge does not say the data was kept:\n%s", out)
	}
	if _, _, ok := account(t, root, srvUser); !ok {
		t.Error("purge deleted the account (its files remain)")
	}
}

// TestServerDebSystemdCalls: with systemd running, the server is enabled
// by deb-systemd-helper and started by deb-systemd-invoke on install,
// restarted on upgrade, stopped on removal.
func TestServerDebSystemdCalls(t *testing.T) {
	v1 := buildPackage(t, "server", "deb", "1.0.0")
	v2 := buildPackage(t, "server", "deb", "1.1.0")
	root := debianRoot(t)
	calls := fakeSystemd(t, root)
	direct := []string{"enable " + srvUnit, "disable " + srvUnit}
	mustChroot(t, root, "dpkg", "-i", copyInto(t, root, v1))
	wantCalls(t, "install", calls(), []string{"daemon-reload", "start " + srvUnit}, append(direct, "restart "+srvUnit))
	if !enabled(root, srvUnit) {
		t.Error("install did not enable the unit")
	}
	mustChroot(t, root, "dpkg", "-i", copyInto(t, root, v2))
	wantCalls(t, "upgrade", calls(), []string{"daemon-reload", "restart " + srvUnit}, append(direct, "start "+srvUnit, "stop "+srvUnit))
	mustChroot(t, root, "dpkg", "-r", "evident-server")
	wantCalls(t, "remove", calls(), []string{"stop " + srvUnit, "daemon-reload"}, append(direct, "start "+srvUnit))
}

// TestServerUnitVerifies: the server's unit passes systemd-analyze verify,
// runs unprivileged, and scores at most 3.5 in systemd-analyze security.
func TestServerUnitVerifies(t *testing.T) {
	needTool(t, "systemd-analyze")
	needTool(t, "dpkg-deb")
	deb := buildPackage(t, "server", "deb", "1.0.0")
	x := t.TempDir()
	run(t, "", "dpkg-deb", "-x", deb, x)
	// LoadCredential= needs systemd 247: an older one is refused.
	if got := strings.TrimSpace(run(t, "", "dpkg-deb", "-f", deb, "Breaks")); got != "systemd (<< 247)" {
		t.Errorf("Breaks: %q, want systemd (<< 247)", got)
	}
	shipped := readIn(t, x, srvUnitIn)
	const exec0 = "ExecStart=" + srvBin + " "
	if !strings.Contains(shipped, exec0) {
		t.Fatalf("unit has no %q", exec0)
	}
	local := strings.Replace(shipped, exec0, "ExecStart="+filepath.Join(x, srvBin)+" ", 1)
	p := filepath.Join(t.TempDir(), srvUnit)
	if err := os.WriteFile(p, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := verifyUnit(p); err != nil {
		t.Error(err)
	}
	broken := filepath.Join(t.TempDir(), srvUnit)
	if err := os.WriteFile(broken, []byte(strings.Replace(local, "UMask=0077", "UMask=0077\nProtectSystem=stricter", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if verifyUnit(broken) == nil {
		t.Error("systemd-analyze verify accepted a broken copy")
	}

	svc := unitService(t, shipped)
	for k, want := range map[string]string{
		"User": srvUser, "Group": srvUser, "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"StateDirectory": "evident-server", "StateDirectoryMode": "0700", "UMask": "0077",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "LoadCredential": "server.yaml:" + srvConf,
		"Restart": "on-failure", "RestartPreventExitStatus": "2 78 243",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	score := exposure(t, p)
	if score > 3.5 {
		t.Errorf("exposure %.1f, want <= 3.5", score)
	}
}

// TestServerRPMContents: the server rpm's header, files and modes.
func TestServerRPMContents(t *testing.T) {
	needTool(t, "rpm")
	pkg := buildPackage(t, "server", "rpm", "1.2.3")
	q := func(args ...string) string {
		return run(t, "", "rpm", append([]string{"-qp"}, append(args, pkg)...)...)
	}
	if got, want := q("--qf", "%{NAME}|%{VERSION}|%{RELEASE}|%{LICENSE}"), "evident-server|1.2.3|1|Apache-2.0"; got != want {
		t.Errorf("rpm header = %q, want %q", got, want)
	}
	files := rpmFiles(t, pkg)
	for path, want := range map[string]string{
		srvBin:         "-rwxr-xr-x  root:root",
		srvUnitIn:      "-rw-r--r--  root:root",
		"/etc/evident": "drwx------  root:root",
		srvConf:        "-rw------- cn root:root",
	} {
		if got := files[path]; got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	scripts := q("--scripts")
	for _, want := range []string{"useradd --system", "systemctl try-restart", "systemctl stop evident-server.service"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm scripts lack %q", want)
		}
	}
	if req := q("--requires"); !strings.Contains(req, "shadow-utils") {
		t.Errorf("rpm requires:\n%s", req)
	}
	if c := strings.TrimSpace(q("--conflicts")); c != "systemd < 247" {
		t.Errorf("rpm conflicts: %q, want systemd < 247", c)
	}
}
