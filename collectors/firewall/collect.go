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

// collectLinux reads nftables, iptables (legacy only: iptables-nft rules
// are already in the nftables ruleset), ufw and firewalld. The kernel
// rulesets decide; ufw and firewalld configuration decide only when no
// ruleset could be read. It has no build tag so it is tested on every OS.
func collectLinux(ctx context.Context, host platform.Host) (collectors.Result, error) {
	r := &reader{host: host, missing: map[string]bool{}}
	p := Payload{Backends: []Backend{}}
	v6 := ipv6Present(host)

	type owned struct {
		backend string
		c       inputChain
	}
	var chains []owned
	nftRead := false
	if res, ok := r.run(ctx, "nft", "-j", "list", "ruleset"); ok {
		cs, err := parseNftJSON(res.Stdout)
		if err != nil {
			r.sources[len(r.sources)-1].Error = err.Error()
			r.failed = append(r.failed, "nft")
		} else {
			nftRead = true
			b := Backend{Name: "nftables"}
			var details []string
			for _, c := range cs {
				chains = append(chains, owned{"nftables", c})
				b.Active = b.Active || c.filters()
				details = append(details, c.String())
			}
			b.InboundDefaultDeny = defaultDeny(cs, v6)
			b.Detail = strings.Join(details, "; ")
			if len(cs) == 0 {
				b.Detail = "no input chain in the ruleset"
			}
			p.Backends = append(p.Backends, b)
		}
	} else if res.ExitCode != 0 {
		r.failed = append(r.failed, "nft")
	}

	for _, t := range []struct{ cmd, name, family string }{
		{"iptables-save", "iptables", "ip"},
		{"ip6tables-save", "ip6tables", "ip6"},
	} {
		res, ok := r.run(ctx, t.cmd)
		if !ok {
			if res.ExitCode != 0 {
				r.failed = append(r.failed, t.cmd)
			}
			continue
		}
		s, err := parseIptablesSave(res.Stdout, t.family)
		if err != nil {
			r.sources[len(r.sources)-1].Error = err.Error()
			r.failed = append(r.failed, t.cmd)
			continue
		}
		if s.NFT && nftRead {
			continue // iptables-nft: the same rules were counted as nftables
		}
		chains = append(chains, owned{t.name, s.Chain})
		b := Backend{Name: t.name, Active: s.Chain.filters(), InboundDefaultDeny: s.Chain.defaultDeny(), Detail: s.Chain.String()}
		if !s.Found {
			b.Detail = "no filter table loaded"
		}
		p.Backends = append(p.Backends, b)
	}
	kernelRead := len(chains) > 0 || nftRead

	var managers []Backend
	if b, ok := r.ufw(); ok {
		managers = append(managers, b)
	}
	if b, ok := r.firewalld(ctx); ok {
		managers = append(managers, b)
	}
	p.Backends = append(p.Backends, managers...)

	for _, b := range p.Backends {
		p.Enabled = p.Enabled || b.Active
	}
	if kernelRead {
		var cs []inputChain
		for _, o := range chains {
			cs = append(cs, o.c)
		}
		p.InboundDefaultDeny = defaultDeny(cs, v6)
		for _, o := range chains {
			if o.c.defaultDeny() && (o.c.Family == "ip" || o.c.Family == "inet") {
				p.DecidedBy = o.backend
				break
			}
		}
		if p.DecidedBy == "" {
			for _, b := range p.Backends {
				if b.Active {
					p.DecidedBy = b.Name
					break
				}
			}
		}
		if p.DecidedBy == "" && len(p.Backends) > 0 {
			p.DecidedBy = p.Backends[0].Name
		}
	} else {
		for _, b := range managers {
			if b.Active {
				p.InboundDefaultDeny, p.DecidedBy = b.InboundDefaultDeny, b.Name
				break
			}
		}
	}
	if !kernelRead && len(managers) == 0 && len(r.failed) > 0 {
		return collectors.Result{Payload: p, Sources: r.sources},
			fmt.Errorf("could not read any firewall ruleset (%s failed)", strings.Join(r.failed, ", "))
	}
	return collectors.Result{Payload: p, Sources: r.sources}, nil
}

// defaultDeny: a packet traverses every input base chain and a drop is
// final, so a family is denied by default when any of its chains is. IPv6
// must be denied too when the host has it.
func defaultDeny(cs []inputChain, v6 bool) bool {
	var v4Deny, v6Deny bool
	for _, c := range cs {
		if !c.defaultDeny() {
			continue
		}
		switch c.Family {
		case "inet":
			v4Deny, v6Deny = true, true
		case "ip":
			v4Deny = true
		case "ip6":
			v6Deny = true
		}
	}
	return v4Deny && (v6Deny || !v6)
}

// ipv6Present reports whether the host has IPv6 addresses.
func ipv6Present(host platform.Host) bool {
	if b, err := host.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", 64); err == nil && strings.TrimSpace(string(b)) == "1" {
		return false
	}
	b, err := host.ReadFile("/proc/net/if_inet6", 1<<20)
	return err == nil && len(strings.TrimSpace(string(b))) > 0
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
