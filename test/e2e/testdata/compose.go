//go:build ignore

// compose builds the composed Linux host snapshots used by the golden test
// from the collectors' recorded fixtures: it lays their trees over one root,
// answers commands with their recorded outputs, runs every collector through
// snapshot.Recorder and writes what was read. Run from the repository root:
//
//	go run ./test/e2e/testdata/compose.go
//
// linux-debian12-vm is not composed: it is `evident-agent snapshot` of the
// development VM.
package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/collectors/all"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
	"github.com/evident-dev/evident/platform/snapshot"
)

type scenario struct {
	name  string
	trees []string          // fixture trees laid over one root, in order
	cmds  map[string]string // argv (joined by spaces) -> recorded stdout file
}

func main() {
	for _, s := range []scenario{
		{
			// Compliant laptop: LUKS2 + LVM, nftables input policy drop,
			// unattended upgrades on, Secure Boot enforcing, TPM 2.0, an
			// EDR agent running, GNOME screen lock enforced by dconf policy.
			name: "linux-luks-laptop",
			trees: []string{"collectors/osinfo/testdata/vm", "collectors/patches/testdata/debian12",
				"collectors/diskencryption/testdata/luks-lvm", "collectors/secureboot/testdata/enabled", "collectors/tpm/testdata/tpm2",
				"collectors/screenlock/testdata/gnome-locked"},
			cmds: map[string]string{
				"nft -j list ruleset":                           "collectors/firewall/testdata/nft-inet-input-policy-drop.json",
				"apt-get -s -o Debug::NoLocking=1 dist-upgrade": "collectors/patches/testdata/apt-dist-upgrade-debian12.txt",
				"apt-config dump":                               "collectors/patches/testdata/apt-config-dump-unattended.txt",
				"ps -e -o comm=":                                "collectors/antimalware/testdata/ps-falcon-clamd.txt",
			},
		},
		{
			// Partial: encrypted root but an unencrypted data disk, IPv4
			// dropped by legacy iptables while IPv6 stays open, firmware in
			// Secure Boot setup mode, a TPM 1.2, no automatic updates, GNOME's
			// screen lock defaults without a policy.
			name: "linux-partial",
			trees: []string{"collectors/osinfo/testdata/vm", "collectors/diskencryption/testdata/luks-plus-data",
				"collectors/firewall/testdata/ipv6-host", "collectors/secureboot/testdata/setupmode", "collectors/tpm/testdata/tpm12",
				"collectors/screenlock/testdata/gnome-default"},
			cmds: map[string]string{
				"nft -j list ruleset": "collectors/firewall/testdata/nft-with-legacy-only.json",
				"iptables-save":       "collectors/firewall/testdata/iptables-legacy-save-input-drop.txt",
				"ip6tables-save":      "collectors/firewall/testdata/iptables-legacy-save-accept.txt",
				"apt-get -s -o Debug::NoLocking=1 dist-upgrade": "collectors/patches/testdata/apt-dist-upgrade-debian12.txt",
				"apt-config dump": "collectors/patches/testdata/apt-config-dump-default.txt",
				"ps -e -o comm=":  "collectors/antimalware/testdata/ps-debian12-vm.txt",
			},
		},
	} {
		if err := compose(s); err != nil {
			fmt.Fprintln(os.Stderr, s.name+":", err)
			os.Exit(1)
		}
		fmt.Println("wrote test/e2e/testdata/snapshots/" + s.name)
	}
}

// overlay copies the tree src over dst; later trees win on the same path.
func overlay(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func compose(s scenario) error {
	root, err := os.MkdirTemp("", "compose")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	for _, t := range s.trees {
		if err := overlay(root, t); err != nil {
			return fmt.Errorf("copy %s: %w", t, err)
		}
	}
	cmds := map[string]platform.Result{}
	for argv, file := range s.cmds {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		cmds[argv] = platform.Result{Stdout: b}
	}
	rec := snapshot.NewRecorder(platformtest.Replay{Live: &platform.Live{Root: root}, OS: "linux", Commands: cmds})
	reg, err := collectors.NewRegistry(all.Default()...)
	if err != nil {
		return err
	}
	agent.Collect(context.Background(), agent.Config{Registry: reg, Host: rec})
	out := filepath.Join("test/e2e/testdata/snapshots", s.name)
	if err := os.RemoveAll(out); err != nil && !os.IsNotExist(err) {
		return err
	}
	_, err = rec.Write(out, s.name, "fixture", time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	return err
}
