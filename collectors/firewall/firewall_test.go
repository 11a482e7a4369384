package firewall

import (
	"context"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseNftJSON(t *testing.T) {
	tests := []struct {
		file          string
		chains        int
		deny, filters bool
		wantErr       bool
	}{
		{file: "nft-empty.json"},
		{file: "nft-vm-host.json"},
		{file: "nft-inet-input-policy-drop.json", chains: 1, deny: true, filters: true},
		{file: "nft-accept-trailing-drop.json", chains: 1, deny: true, filters: true},
		{file: "nft-trailing-reject.json", chains: 1, deny: true, filters: true},
		{file: "nft-accept-all.json", chains: 1},
		{file: "nft-iptables-nft-input-drop.json", chains: 2, deny: true, filters: true},
		{file: "nft-with-legacy-only.json"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cs, err := parseNftJSON(platformtest.ReadFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			filters := false
			for _, c := range cs {
				filters = filters || c.filters()
			}
			if len(cs) != tt.chains || defaultDeny(cs, true) != tt.deny || filters != tt.filters {
				t.Errorf("chains %+v: deny %v filters %v", cs, defaultDeny(cs, true), filters)
			}
		})
	}
	full := platformtest.ReadFixture(t, "nft-inet-input-policy-drop.json")
	for _, bad := range [][]byte{nil, []byte("{"), full[:len(full)/2], []byte(`{"other":[]}`), []byte("Error: Could not process rule: Operation not permitted")} {
		if _, err := parseNftJSON(bad); err == nil {
			t.Errorf("parseNftJSON(%.30q): want error", bad)
		}
	}
}

func TestParseIptablesSave(t *testing.T) {
	tests := []struct {
		file, family     string
		nft, found, deny bool
		rules            int
	}{
		{file: "iptables-nft-save-input-drop.txt", family: "ip", nft: true, found: true, deny: true, rules: 2},
		{file: "ip6tables-nft-save-input-drop.txt", family: "ip6", nft: true, found: true, deny: true},
		{file: "iptables-legacy-save-input-drop.txt", family: "ip", found: true, deny: true, rules: 1},
		{file: "iptables-legacy-save-accept.txt", family: "ip", found: true, rules: 1},
		{file: "iptables-save-vm-host.txt", family: "ip"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s, err := parseIptablesSave(platformtest.ReadFixture(t, tt.file), tt.family)
			if err != nil {
				t.Fatal(err)
			}
			if s.NFT != tt.nft || s.Found != tt.found || s.Chain.defaultDeny() != tt.deny || s.Chain.Rules != tt.rules {
				t.Errorf("got %+v", s)
			}
		})
	}
	// Synthetic: a trailing unconditional REJECT, a conditional DROP and
	// garbage.
	s, _ := parseIptablesSave([]byte("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n"), "ip")
	if !s.Chain.defaultDeny() {
		t.Errorf("trailing reject: %+v", s)
	}
	s, _ = parseIptablesSave([]byte("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.0/8 -j DROP\nCOMMIT\n"), "ip")
	if s.Chain.defaultDeny() {
		t.Errorf("conditional drop: %+v", s)
	}
	if _, err := parseIptablesSave([]byte("*filter\nthis is not iptables-save\n"), "ip"); err == nil {
		t.Error("garbage: want error")
	}
}

func TestCollect(t *testing.T) {
	res := func(file string) platform.Result { return platform.Result{Stdout: platformtest.ReadFixture(t, file)} }
	empty := platform.Result{}
	tests := []struct {
		name              string
		root              string
		cmds              map[string]platform.Result
		enabled, deny     bool
		decidedBy         string
		backends, wantErr bool
	}{
		{name: "nft policy drop", cmds: map[string]platform.Result{"nft": res("nft-inet-input-policy-drop.json"), "iptables-save": empty, "ip6tables-save": empty},
			enabled: true, deny: true, decidedBy: "nftables", backends: true},
		{name: "iptables-nft counted once", cmds: map[string]platform.Result{"nft": res("nft-iptables-nft-input-drop.json"),
			"iptables-save": res("iptables-nft-save-input-drop.txt"), "ip6tables-save": res("ip6tables-nft-save-input-drop.txt")},
			enabled: true, deny: true, decidedBy: "nftables", backends: true},
		{name: "legacy v4 drop but v6 open", cmds: map[string]platform.Result{"nft": res("nft-with-legacy-only.json"),
			"iptables-save": res("iptables-legacy-save-input-drop.txt"), "ip6tables-save": empty},
			enabled: true, deny: false, decidedBy: "iptables", backends: true},
		{name: "accept all", cmds: map[string]platform.Result{"nft": res("nft-accept-all.json")}, decidedBy: "nftables", backends: true},
		{name: "nothing installed", backends: false},
		{name: "nft permission denied", cmds: map[string]platform.Result{"nft": {ExitCode: 1, Stderr: []byte("Operation not permitted")}}, wantErr: true},
		{name: "ufw fallback", root: "testdata/ufw-enabled", enabled: true, deny: true, decidedBy: "ufw", backends: true},
		{name: "ufw installed not enabled", root: "testdata/ufw-installed", backends: true},
		{name: "firewalld running", cmds: map[string]platform.Result{
			"firewall-cmd --state":                                {Stdout: []byte("running\n")},
			"firewall-cmd --get-default-zone":                     {Stdout: []byte("public\n")},
			"firewall-cmd --permanent --zone=public --get-target": {Stdout: []byte("default\n")}},
			enabled: true, deny: true, decidedBy: "firewalld", backends: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tt.root
			if root == "" {
				root = "testdata/ipv6-host"
			}
			h := platformtest.Replay{Live: &platform.Live{Root: root}, Commands: tt.cmds}
			r, err := collectLinux(context.Background(), h)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			p := r.Payload.(Payload)
			if p.Enabled != tt.enabled || p.InboundDefaultDeny != tt.deny || p.DecidedBy != tt.decidedBy || (len(p.Backends) > 0) != tt.backends {
				t.Errorf("payload = %+v", p)
			}
		})
	}
}

func FuzzParseNftJSON(f *testing.F) {
	for _, n := range []string{"nft-inet-input-policy-drop.json", "nft-accept-trailing-drop.json", "nft-iptables-nft-input-drop.json"} {
		f.Add(platformtest.ReadFixture(f, n))
	}
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseNftJSON(b) })
}

func FuzzParseIptablesSave(f *testing.F) {
	for _, n := range []string{"iptables-nft-save-input-drop.txt", "iptables-legacy-save-input-drop.txt"} {
		f.Add(platformtest.ReadFixture(f, n))
	}
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseIptablesSave(b, "ip") })
}
