//go:build linux

package firewall

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
)

// The differential test: every ruleset is loaded into a network namespace
// of its own, the collector runs inside it, and its verdict per address
// family is compared with what really happens to a new TCP connection and a
// UDP datagram sent from a second namespace over a veth, over IPv4 and
// IPv6, to a port no rule lists. Any disagreement fails and prints the
// ruleset.

// probePorts are the ports a real probe tries: each is, in every ruleset
// of this test, either listed by no rule or inside a listed range so broad
// it is no service (1024-65535): what the collector calls "a port no rule
// lists".
var probePorts = []int{probePort, 1024, 1}

const (
	hostV4, clientV4 = "198.51.100.1", "198.51.100.2"
	hostV6, clientV6 = "2001:db8:64::1", "2001:db8:64::2"
	probePort        = 47123
	probeTimeout     = 700 * time.Millisecond
	// recheckTimeout is the wait of a second round of probes when the
	// first disagrees with the collector: on a loaded machine an answer can
	// be late, and a late answer is not a drop.
	recheckTimeout = 5 * time.Second
	helperEnv      = "EVIDENT_FW_NETNS_HELPER"
)

// TestMain lets the test binary serve as its own helper inside a namespace:
// a listener answering TCP and UDP on the probe port, or one collection.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "listen":
		listen()
		return
	case "probe":
		sendProbe(os.Getenv("EVIDENT_FW_PROBE"))
		return
	case "collect":
		res, err := collectLinux(context.Background(), platform.NewLive())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(res.Payload)
		return
	}
	os.Exit(m.Run())
}

// listen accepts TCP and echoes UDP on the probe port (dual stack) until
// killed, and prints "ready" once bound.
func listen() {
	for _, port := range probePorts {
		tl, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ul, err := net.ListenPacket("udp", fmt.Sprintf("[::]:%d", port))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := ul.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = ul.WriteTo(buf[:n], from)
			}
		}()
		go func() {
			for {
				c, err := tl.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	fmt.Println("ready")
	time.Sleep(10 * time.Minute) // never outlive the test
}

type fwCase struct {
	name string
	// unknownOK: the collector may answer unknown (a construct it does
	// not model, such as a redirect); it must still never say deny when a
	// probe got through.
	unknownOK bool
	nft       string // nft -f input
	// iptables-restore inputs; legacy ones go through iptables-legacy-restore
	ipt4, ipt6, legacy4, legacy6 string
}

// ruleset prints the case for a failure message.
func (c fwCase) ruleset() string {
	var b strings.Builder
	for _, p := range []struct{ name, text string }{{"nft", c.nft}, {"iptables-nft", c.ipt4}, {"ip6tables-nft", c.ipt6}, {"iptables-legacy", c.legacy4}, {"ip6tables-legacy", c.legacy6}} {
		if p.text != "" {
			fmt.Fprintf(&b, "--- %s ---\n%s\n", p.name, p.text)
		}
	}
	return b.String()
}

func iptDoc(policy string, rules ...string) string {
	return "*filter\n:INPUT " + policy + " [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:ALLOW - [0:0]\n:CHECK - [0:0]\n" + strings.Join(rules, "\n") + "\nCOMMIT\n"
}

// constructs are the rulesets of the issue and their neighbours.
func constructs() []fwCase {
	base := "ct state established,related accept\n iif lo accept\n tcp dport 22 accept\n"
	inet := func(policy, rules string) string {
		return "table inet f {\n chain input { type filter hook input priority 0; policy " + policy + ";\n" + rules + "\n }\n chain allow {\n accept\n }\n chain check {\n tcp dport 22 accept\n return\n }\n}\n"
	}
	return []fwCase{
		{name: "nft policy drop with services", nft: inet("drop", base+" udp dport 53 accept\n ip saddr 10.0.0.0/8 accept\n ip6 saddr fd00::/8 accept")},
		{name: "nft policy accept", nft: inet("accept", base)},
		{name: "nft earlier unconditional accept", nft: inet("drop", "accept\n"+base)},
		{name: "nft earlier counter accept", nft: inet("drop", "counter accept\n"+base)},
		{name: "nft jump to accept-all", nft: inet("drop", base+" jump allow")},
		{name: "nft goto accept-all", nft: inet("drop", base+" goto allow")},
		{name: "nft jump and return", nft: inet("drop", base+" jump check")},
		{name: "nft goto and return ends the base chain", nft: inet("accept", " goto check\n drop")},
		{name: "nft l4proto set accept", nft: inet("drop", base+" meta l4proto { tcp, udp, icmp, ipv6-icmp } accept")},
		{name: "nft l4proto icmp only", nft: inet("drop", base+" meta l4proto { icmp, ipv6-icmp } accept")},
		{name: "nft dormant table", nft: "table inet f {\n flags dormant\n chain input { type filter hook input priority 0; policy drop; }\n}\n"},
		{name: "nft trailing drop", nft: inet("accept", base+" counter drop")},
		{name: "nft trailing reject", nft: inet("accept", base+" reject with icmpx type admin-prohibited")},
		{name: "nft conditional drop only", nft: inet("accept", " ip saddr 10.0.0.0/8 drop")},
		{name: "nft high port range", nft: inet("drop", base+" tcp dport 1024-65535 accept")},
		{name: "nft udp high ports", nft: inet("drop", base+" udp dport >= 1024 accept")},
		{name: "nft every source but one", nft: inet("drop", base+" ip saddr != 10.0.0.0/8 accept")},
		{name: "nft ipv4 only accept", nft: inet("drop", base+" meta nfproto ipv4 accept")},
		{name: "nft ipv6 only accept", nft: inet("drop", base+" meta nfproto ipv6 accept")},
		{name: "nft ct state new accept", nft: inet("drop", base+" ct state new accept")},
		{name: "nft vmap of listed ports", nft: inet("drop", base+" tcp dport vmap { 22 : accept, 80 : accept, 8000-8100 : accept }")},
		{name: "nft vmap on protocol", nft: inet("drop", base+" meta l4proto vmap { tcp : accept, udp : drop }")},
		{name: "nft uplink interface accept", nft: inet("drop", base+` iifname "vh0" accept`)},
		{name: "nft vpn interface accept", nft: inet("drop", base+` iifname "wg0" accept`)},
		{name: "nft wildcard interface accept", nft: inet("drop", base+` iifname "vh*" accept`)},
		{name: "nft ip table only", nft: "table ip f {\n chain input { type filter hook input priority 0; policy drop; }\n}\n"},
		{name: "nft ip and ip6 tables", nft: "table ip f {\n chain input { type filter hook input priority 0; policy drop; }\n}\ntable ip6 f {\n chain input { type filter hook input priority 0; policy drop; }\n}\n"},
		{name: "nft second base chain drops", nft: "table inet a {\n chain input { type filter hook input priority -10; policy accept; accept; }\n}\ntable inet b {\n chain input { type filter hook input priority 10; policy drop; }\n}\n"},
		{name: "nft prerouting drop", nft: "table inet raw {\n chain pre { type filter hook prerouting priority -300; policy drop; }\n}\n"},
		{name: "nft named set of ports", nft: "table inet f {\n set svc { type inet_service; elements = { 22, 443 } }\n chain input { type filter hook input priority 0; policy drop; tcp dport @svc accept; }\n}\n"},
		{name: "nft named set of every port", nft: "table inet f {\n set svc { type inet_service; flags interval; elements = { 1-65535 } }\n chain input { type filter hook input priority 0; policy drop; tcp dport @svc accept; udp dport @svc accept; }\n}\n"},
		{name: "nft syn accept", nft: inet("drop", base+" tcp flags & (fin|syn|rst|ack) == syn accept")},
		{name: "nft limit accept", nft: inet("drop", base+" limit rate 100/second accept")},
		{name: "iptables-nft policy drop then accept", ipt4: iptDoc("DROP", "-A INPUT -j ACCEPT"), ipt6: iptDoc("DROP")},
		{name: "iptables-nft policy drop with services", ipt4: iptDoc("DROP", "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-A INPUT -i lo -j ACCEPT",
			"-A INPUT -p tcp -m multiport --dports 22,80,443 -j ACCEPT", `-A INPUT -s 10.0.0.0/8 -m comment --comment "office net" -j ACCEPT`),
			ipt6: iptDoc("DROP", "-A INPUT -p udp -m udp --dport 546 -j ACCEPT")},
		{name: "iptables-nft jump to accept", ipt4: iptDoc("DROP", "-A INPUT -j ALLOW", "-A ALLOW -j ACCEPT"), ipt6: iptDoc("DROP")},
		{name: "iptables-nft ctstate new", ipt4: iptDoc("DROP", "-A INPUT -m conntrack --ctstate NEW -j ACCEPT"), ipt6: iptDoc("DROP")},
		{name: "iptables-nft v4 only", ipt4: iptDoc("DROP")},
		{name: "iptables-legacy policy drop", legacy4: iptDoc("DROP", "-A INPUT -p tcp --dport 22 -j ACCEPT"), legacy6: iptDoc("DROP")},
		{name: "iptables-legacy policy drop then accept", legacy4: iptDoc("DROP", "-A INPUT -j ACCEPT"), legacy6: iptDoc("DROP")},
		{name: "iptables-legacy trailing reject", legacy4: iptDoc("ACCEPT", "-A INPUT -p tcp --dport 22 -j ACCEPT", "-A INPUT -j REJECT --reject-with icmp-host-prohibited"), legacy6: iptDoc("ACCEPT", "-A INPUT -j REJECT")},
		{name: "legacy drop behind an nft accept", nft: inet("accept", "accept"), legacy4: iptDoc("DROP"), legacy6: iptDoc("DROP")},
		{name: "nft drop behind a legacy accept", nft: inet("drop", base), legacy4: iptDoc("ACCEPT", "-A INPUT -j ACCEPT"), legacy6: iptDoc("ACCEPT")},
		{name: "nft drop to every other address", nft: inet("accept", " ip daddr != "+hostV4+" drop\n ip6 daddr != "+hostV6+" drop")},
		{name: "nft accept to the host's address", nft: inet("drop", base+" ip daddr "+hostV4+" accept")},
		{name: "nft accept local destinations", nft: inet("drop", base+" fib daddr type local accept")},
		{name: "nft accept multicast destinations", nft: inet("drop", base+" ip daddr 224.0.0.0/4 accept\n ip6 daddr ff00::/8 accept")},
		{name: "iptables-legacy accept to the host's address", legacy4: iptDoc("DROP", "-A INPUT -d "+hostV4+"/32 -j ACCEPT"), legacy6: iptDoc("DROP")},
		{name: "nft drop above a port", nft: inet("accept", " meta l4proto { tcp, udp } th dport >= 40000 drop")},
		{name: "nft drop every high port", nft: inet("accept", " tcp dport 1024-65535 drop\n udp dport 1024-65535 drop")},
		{name: "nft accept from source port 53", nft: inet("drop", base+" udp sport 53 accept\n tcp sport 53 accept")},
		{name: "nft accept from half the internet", nft: inet("drop", base+" ip saddr 128.0.0.0/1 accept")},
		{name: "nft redirect to an accepted port", unknownOK: true, nft: "table ip nat {\n chain pre { type nat hook prerouting priority -100; policy accept; meta l4proto tcp redirect to :22; }\n}\n" + inet("drop", " tcp dport 22 accept")},
		{name: "nft notrack then ct state new drop", unknownOK: true, nft: "table inet raw {\n chain pre { type filter hook prerouting priority -300; policy accept; notrack; }\n}\n" + inet("accept", " ct state established,related accept\n tcp dport 22 accept\n ct state new drop")},
		{name: "nft set update with a limit", unknownOK: true, nft: "table inet f {\n set flood { type ipv4_addr; flags dynamic; }\n set flood6 { type ipv6_addr; flags dynamic; }\n chain input { type filter hook input priority 0; policy accept; update @flood { ip saddr limit rate over 10/second } drop; update @flood6 { ip6 saddr limit rate over 10/second } drop; }\n}\n"},
		{name: "iptables-legacy accept from source port 53", legacy4: iptDoc("DROP", "-A INPUT -p udp -m udp --sport 53 -j ACCEPT", "-A INPUT -p tcp -m tcp --sport 53 -j ACCEPT"), legacy6: iptDoc("DROP")},
		{name: "empty ruleset"},
	}
}

// randomCases builds seeded random combinations of tables, priorities,
// policies, jumps and matches.
func randomCases(seed uint64, n int) []fwCase {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	matches := []string{"", "tcp dport 22", "udp dport 53", "tcp dport { 80, 443 }", "tcp dport 1024-65535", "udp dport 1024-65535",
		"ip saddr 10.0.0.0/8", "ip saddr != 10.0.0.0/8", "ip6 saddr fd00::/8", "meta l4proto { tcp, udp }", "meta l4proto icmp",
		"ct state established,related", "ct state new", "ct state invalid", `iifname "vh0"`, `iifname "wg0"`, `iif "lo"`, "meta nfproto ipv4",
		"meta nfproto ipv6", "th dport 8000-8100", "counter", "ip daddr " + hostV4, "ip daddr != " + hostV4,
		"ip6 daddr != " + hostV6, "fib daddr type local", "tcp flags & (fin|syn|rst|ack) == syn", "udp dport != 53"}
	verdicts := []string{"accept", "drop", "reject", "jump c1", "goto c2", "return", "counter"}
	var out []fwCase
	for i := 0; i < n; i++ {
		var b strings.Builder
		tables := 1 + r.IntN(2)
		for t := 0; t < tables; t++ {
			fam := []string{"inet", "inet", "ip", "ip6"}[r.IntN(4)]
			policy := []string{"accept", "drop"}[r.IntN(2)]
			fmt.Fprintf(&b, "table %s t%d {\n", fam, t)
			if r.IntN(8) == 0 {
				b.WriteString(" flags dormant\n")
			}
			fmt.Fprintf(&b, " chain input { type filter hook input priority %d; policy %s;\n", r.IntN(41)-20, policy)
			for k := r.IntN(6); k > 0; k-- {
				m := matches[r.IntN(len(matches))]
				if fam == "ip" && strings.Contains(m, "ip6") || fam == "ip6" && strings.Contains(m, "ip ") || fam != "inet" && strings.Contains(m, "nfproto") {
					m = ""
				}
				fmt.Fprintf(&b, "  %s %s\n", m, verdicts[r.IntN(len(verdicts))])
			}
			b.WriteString(" }\n")
			for _, c := range []string{"c1", "c2"} {
				fmt.Fprintf(&b, " chain %s {\n", c)
				for k := r.IntN(3); k > 0; k-- {
					m := matches[r.IntN(len(matches))]
					if fam == "ip" && strings.Contains(m, "ip6") || fam == "ip6" && strings.Contains(m, "ip ") || fam != "inet" && strings.Contains(m, "nfproto") {
						m = ""
					}
					fmt.Fprintf(&b, "  %s %s\n", m, []string{"accept", "drop", "return", "counter"}[r.IntN(4)])
				}
				b.WriteString(" }\n")
			}
			b.WriteString("}\n")
		}
		c := fwCase{name: fmt.Sprintf("random %d", i), nft: b.String()}
		if r.IntN(4) == 0 {
			rules := []string{"-A INPUT -p tcp --dport 22 -j ACCEPT", "-A INPUT -j ACCEPT", "-A INPUT -s 10.0.0.0/8 -j ACCEPT", "-A INPUT -j DROP",
				"-A INPUT -m conntrack --ctstate NEW -j ACCEPT", "-A INPUT -j CHECK", "-A CHECK -j RETURN", "-A INPUT -p udp -m udp --dport 1024:65535 -j ACCEPT"}
			var pick []string
			for k := r.IntN(3); k > 0; k-- {
				pick = append(pick, rules[r.IntN(len(rules))])
			}
			c.legacy4 = iptDoc([]string{"ACCEPT", "DROP"}[r.IntN(2)], pick...)
		}
		out = append(out, c)
	}
	return out
}

func need(t *testing.T, cmds ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the firewall differential test needs root under CI")
		}
		t.Skip("needs root (network namespaces)")
	}
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing: .ci/run installs nftables, iptables and iproute2", c)
			}
			t.Skipf("%s is missing (apt-get install nftables iptables iproute2)", c)
		}
	}
}

func sh(t *testing.T, stdin string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// lab is a client namespace joined to a fresh host namespace by a veth.
type lab struct {
	host, client string
}

func newLab(t *testing.T, id int) lab {
	t.Helper()
	l := lab{host: fmt.Sprintf("evfw-h%d-%d", os.Getpid(), id), client: fmt.Sprintf("evfw-c%d-%d", os.Getpid(), id)}
	sh(t, "", "ip", "netns", "add", l.host)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.host).Run() })
	sh(t, "", "ip", "netns", "add", l.client)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.client).Run() })
	sh(t, "", "ip", "link", "add", "vh0", "netns", l.host, "type", "veth", "peer", "name", "vc0", "netns", l.client)
	for _, s := range []struct{ ns, dev, v4, v6, peer4, peer6 string }{
		{l.host, "vh0", hostV4, hostV6, clientV4, clientV6},
		{l.client, "vc0", clientV4, clientV6, hostV4, hostV6},
	} {
		ns := []string{"ip", "netns", "exec", s.ns}
		sh(t, "", append(ns, "ip", "link", "set", "lo", "up")...)
		sh(t, "", append(ns, "ip", "addr", "add", s.v4+"/24", "dev", s.dev)...)
		sh(t, "", append(ns, "ip", "addr", "add", s.v6+"/64", "dev", s.dev, "nodad")...)
		sh(t, "", append(ns, "ip", "link", "set", s.dev, "up")...)
		// The world is behind the veth: a default route through it.
		sh(t, "", append(ns, "ip", "route", "add", "default", "via", s.peer4)...)
		sh(t, "", append(ns, "ip", "-6", "route", "add", "default", "via", s.peer6)...)
	}
	// Static neighbours: an input policy drop also drops IPv6 neighbour
	// discovery, which would hide what the ruleset does to the probe.
	mac := func(ns, dev string) string {
		out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/sys/class/net/"+dev+"/address").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	hm, cm := mac(l.host, "vh0"), mac(l.client, "vc0")
	sh(t, "", "ip", "netns", "exec", l.host, "ip", "-6", "neigh", "replace", clientV6, "lladdr", cm, "dev", "vh0", "nud", "permanent")
	sh(t, "", "ip", "netns", "exec", l.client, "ip", "-6", "neigh", "replace", hostV6, "lladdr", hm, "dev", "vc0", "nud", "permanent")
	sh(t, "", "ip", "netns", "exec", l.host, "ip", "neigh", "replace", clientV4, "lladdr", cm, "dev", "vh0", "nud", "permanent")
	sh(t, "", "ip", "netns", "exec", l.client, "ip", "neigh", "replace", hostV4, "lladdr", hm, "dev", "vc0", "nud", "permanent")
	return l
}

// probeFrom reports whether a new TCP connection or a UDP datagram from the
// client namespace reaches the listener, per family.
func (l lab) probeFrom(t *testing.T, self string, timeout time.Duration) map[string]bool {
	t.Helper()
	open := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Every probe port, from an ephemeral source port and from 53 (the
	// sender picks its source port).
	for _, fam := range []struct{ name, addr string }{{"ip", hostV4}, {"ip6", hostV6}} {
		for _, proto := range []string{"tcp", "udp"} {
			for _, port := range probePorts {
				for _, sport := range []string{"0", "53"} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						cmd := exec.Command("ip", "netns", "exec", l.client, self)
						cmd.Env = append(os.Environ(), helperEnv+"=probe", "EVIDENT_FW_PROBE="+proto+" "+net.JoinHostPort(fam.addr, fmt.Sprint(port)),
							"EVIDENT_FW_PROBE_TIMEOUT="+timeout.String(), "EVIDENT_FW_PROBE_SPORT="+sport)
						b, _ := cmd.Output()
						if strings.Contains(string(b), "PROBE-OPEN") {
							mu.Lock()
							open[fam.name] = true
							mu.Unlock()
						}
					}()
				}
			}
		}
	}
	wg.Wait()
	return open
}

// sendProbe runs inside the client namespace: it prints PROBE-OPEN when a
// TCP connection is accepted or a UDP datagram is echoed.
func sendProbe(spec string) {
	proto, addr, _ := strings.Cut(spec, " ")
	timeout, err := time.ParseDuration(os.Getenv("EVIDENT_FW_PROBE_TIMEOUT"))
	if err != nil {
		timeout = probeTimeout
	}
	d := net.Dialer{Timeout: timeout}
	network := proto
	if sp := os.Getenv("EVIDENT_FW_PROBE_SPORT"); sp != "" && sp != "0" {
		n, _ := strconv.Atoi(sp)
		if proto == "tcp" {
			d.LocalAddr = &net.TCPAddr{Port: n}
		} else {
			d.LocalAddr = &net.UDPAddr{Port: n}
		}
		// Every probe from this source port binds it at the same time (and
		// a finished TCP probe holds it in TIME_WAIT): without
		// SO_REUSEADDR all but one would fail to bind and read as drops,
		// and a dual-stack IPv6 socket would take the port from IPv4.
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			}); err != nil {
				return err
			}
			return serr
		}
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
				network += "4"
			} else {
				network += "6"
			}
		}
	}
	c, err := d.Dial(network, addr)
	if err != nil {
		return
	}
	defer c.Close()
	if proto == "tcp" {
		fmt.Println("PROBE-OPEN")
		return
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("evident")); err != nil {
		return
	}
	buf := make([]byte, 16)
	if n, err := c.Read(buf); err == nil && bytes.Equal(buf[:n], []byte("evident")) {
		fmt.Println("PROBE-OPEN")
	}
}

func TestDifferentialNetns(t *testing.T) {
	need(t, "ip", "nft", "iptables-nft-restore", "iptables-legacy-restore", "ip6tables-nft-restore", "ip6tables-legacy-restore")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cases := append(constructs(), randomCases(seed(), randomCount())...)
	if len(cases) < 40 {
		t.Fatalf("only %d rulesets", len(cases))
	}
	agreed, ran := 0, 0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ran++
			l := newLab(t, i)
			in := []string{"ip", "netns", "exec", l.host}
			if c.nft != "" {
				sh(t, c.nft, append(in, "nft", "-f", "-")...)
			}
			for _, x := range []struct{ text, tool string }{{c.ipt4, "iptables-nft-restore"}, {c.ipt6, "ip6tables-nft-restore"},
				{c.legacy4, "iptables-legacy-restore"}, {c.legacy6, "ip6tables-legacy-restore"}} {
				if x.text != "" {
					sh(t, x.text, append(in, x.tool)...)
				}
			}
			lst := exec.Command("ip", "netns", "exec", l.host, self)
			lst.Env = append(os.Environ(), helperEnv+"=listen")
			stdout, _ := lst.StdoutPipe()
			if err := lst.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = lst.Process.Kill(); _ = lst.Wait() })
			ready := make([]byte, 6)
			if _, err := stdout.Read(ready); err != nil || string(ready) != "ready\n" {
				t.Fatalf("listener: %q %v", ready, err)
			}
			real := l.probeFrom(t, self, probeTimeout)

			col := exec.Command("ip", "netns", "exec", l.host, self)
			col.Env = append(os.Environ(), helperEnv+"=collect")
			out, err := col.Output()
			if err != nil {
				t.Fatalf("collect in the namespace: %v", err)
			}
			var p Payload
			if err := json.Unmarshal(out, &p); err != nil {
				t.Fatalf("collect output: %v\n%s", err, out)
			}
			got := map[string]Family{}
			for _, f := range p.Families {
				got[f.Family] = f
			}
			agreesFam := func(fam string, real map[string]bool) bool {
				v := got[fam].Verdict
				switch {
				case v == VerdictUnknown:
					return c.unknownOK
				case real[fam]:
					return v == VerdictOpen
				}
				return v == VerdictDeny
			}
			agrees := func(real map[string]bool) bool {
				return agreesFam("ip", real) && agreesFam("ip6", real)
			}
			if !agrees(real) {
				// Only a drop can be late: probe again with a long wait.
				real = l.probeFrom(t, self, recheckTimeout)
			}
			bad := false
			for _, fam := range []string{"ip", "ip6"} {
				if !agreesFam(fam, real) {
					bad = true
					t.Errorf("%s: collector says %s (%s); a real probe was %s", familyName(fam), got[fam].Verdict, got[fam].Reason, map[bool]string{true: "let in", false: "dropped"}[real[fam]])
				}
			}
			if p.InboundDefaultDeny && (real["ip"] || real["ip6"]) || !c.unknownOK && p.InboundDefaultDeny != (!real["ip"] && !real["ip6"]) {
				bad = true
				t.Errorf("inbound_default_deny %v; real probes open: %v", p.InboundDefaultDeny, real)
			}
			if bad {
				t.Logf("ruleset:\n%s", c.ruleset())
				return
			}
			agreed++
		})
	}
	t.Logf("%d of %d rulesets: the collector agreed with real traffic", agreed, ran)
}

// seed and randomCount let a developer explore more random rulesets
// (EVIDENT_FW_SEED, EVIDENT_FW_RANDOM); CI runs the fixed seed.
func seed() uint64 {
	if s, err := strconv.ParseUint(os.Getenv("EVIDENT_FW_SEED"), 10, 64); err == nil {
		return s
	}
	return 20261206
}

func randomCount() int {
	if n, err := strconv.Atoi(os.Getenv("EVIDENT_FW_RANDOM")); err == nil && n > 0 {
		return n
	}
	return 24
}
