package firewall

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// reader accumulates the sources of one collection.
type reader struct {
	host    platform.Host
	sources []collectors.Source
	failed  []string        // commands that were installed but could not be read
	missing map[string]bool // commands not installed
}

// run runs argv and records it. ok is false when the command is missing,
// failed to run or exited non-zero.
func (r *reader) run(ctx context.Context, argv ...string) (platform.Result, bool) {
	res, err := r.host.Run(ctx, argv...)
	if errors.Is(err, platform.ErrCommandNotFound) {
		r.missing[argv[0]] = true
		return res, false
	}
	if err != nil {
		r.sources = append(r.sources, collectors.Source{Kind: "command", Ref: strings.Join(argv, " "), Error: err.Error()})
		r.failed = append(r.failed, argv[0])
		return res, false
	}
	ex := res.Stdout
	if res.ExitCode != 0 {
		ex = res.Stderr
	}
	r.sources = append(r.sources, collectors.CommandSource(res, ex))
	return res, res.ExitCode == 0
}

func (r *reader) file(path string) ([]byte, bool) {
	b, err := r.host.ReadFile(path, 64<<10)
	if err != nil {
		if !platform.IsNotExist(err) {
			r.sources = append(r.sources, collectors.FileSource(path, nil, err))
		}
		return nil, false
	}
	r.sources = append(r.sources, collectors.FileSource(path, b, nil))
	return b, true
}

// ipv6Present reports whether the host has an IPv6 address other than
// loopback. /proc/net/if_inet6 decides, not net.ipv6.conf.all.disable_ipv6:
// an interface may re-enable IPv6 under "all" disabled.
func ipv6Present(host platform.Host) bool {
	b, err := host.ReadFile("/proc/net/if_inet6", 1<<20)
	if err != nil {
		// Unreadable: assume IPv6, so an IPv4-only ruleset is not a deny.
		return !platform.IsNotExist(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[0] != "00000000000000000000000000000001" {
			return true
		}
	}
	return false
}

// ufw reads ufw's own configuration: ENABLED=yes in /etc/ufw/ufw.conf and
// the default input policy in /etc/default/ufw.
func (r *reader) ufw() (Backend, bool) {
	conf, ok := r.file("/etc/ufw/ufw.conf")
	if !ok {
		return Backend{}, false
	}
	b := Backend{Name: "ufw", Active: strings.EqualFold(parseShellVars(conf)["ENABLED"], "yes")}
	policy := "unknown"
	if def, ok := r.file("/etc/default/ufw"); ok {
		policy = parseShellVars(def)["DEFAULT_INPUT_POLICY"]
	}
	b.InboundDefaultDeny = b.Active && (policy == "DROP" || policy == "REJECT")
	b.Detail = fmt.Sprintf("ENABLED=%v, DEFAULT_INPUT_POLICY=%s", b.Active, policy)
	return b, true
}

// firewalld asks a running firewalld for the target of its default zone:
// "default", "REJECT" and "DROP" deny unmatched inbound traffic; "ACCEPT"
// does not.
func (r *reader) firewalld(ctx context.Context) (Backend, bool) {
	res, ok := r.run(ctx, "firewall-cmd", "--state")
	if r.missing["firewall-cmd"] {
		return Backend{}, false // not installed
	}
	b := Backend{Name: "firewalld", Active: ok && strings.TrimSpace(string(res.Stdout)) == "running"}
	if !b.Active {
		b.Detail = "not running"
		return b, true
	}
	zr, ok := r.run(ctx, "firewall-cmd", "--get-default-zone")
	zone := strings.TrimSpace(string(zr.Stdout))
	if !ok || zone == "" {
		b.Detail = "running; default zone unknown"
		return b, true
	}
	tr, ok := r.run(ctx, "firewall-cmd", "--permanent", "--zone="+zone, "--get-target")
	target := strings.TrimSpace(string(tr.Stdout))
	b.InboundDefaultDeny = ok && target != "" && target != "ACCEPT"
	b.Detail = fmt.Sprintf("running; default zone %s target %s", zone, target)
	return b, true
}
