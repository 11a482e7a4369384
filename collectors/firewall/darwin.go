package firewall

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collectDarwin reads a darwin host (live or a replayed snapshot). It has no build
// tag: parsers and collection are tested on every OS.
//
// The macOS Application Firewall (ALF) decides, through socketfilterfw
// (com.apple.alf.plist is not read: macOS 15 removed it). Inbound default
// deny is ALF state 2, or ALF on with "block all incoming connections":
// ALF state 1 alone is enabled but NOT default deny, because it lets any
// signed application (and any app the user allowed) accept inbound
// connections without a rule. Stealth mode (no answer to ICMP/closed-port
// probes) is reported in the detail only.
//
// pf is read for the record (`pfctl -s info`, which needs root), but its
// status does not decide: macOS enables pf with only Apple's anchors for
// features such as Internet Sharing, so "pf enabled" says nothing about
// inbound filtering without reading the ruleset.
func collectDarwin(ctx context.Context, host platform.Host) (collectors.Result, error) {
	r := &reader{host: host, missing: map[string]bool{}}
	p := Payload{Backends: []Backend{}}

	alf := Backend{Name: "alf"}
	res, ok := r.run(ctx, "socketfilterfw", "--getglobalstate")
	if !ok {
		if r.missing["socketfilterfw"] {
			return collectors.Result{Payload: p, Sources: r.sources}, errors.New("socketfilterfw is not installed: cannot read the Application Firewall")
		}
		return collectors.Result{Payload: p, Sources: r.sources}, fmt.Errorf("socketfilterfw --getglobalstate exited %d", res.ExitCode)
	}
	state, err := parseALFGlobalState(res.Stdout)
	if err != nil {
		r.sources[len(r.sources)-1].Error = err.Error()
		return collectors.Result{Payload: p, Sources: r.sources}, err
	}
	alf.Active = state >= 1
	details := []string{fmt.Sprintf("global state %d", state)}

	blockAll, blockKnown := state == 2, state == 2
	if state == 1 {
		if br, ok := r.run(ctx, "socketfilterfw", "--getblockall"); ok {
			if v, err := parseALFOnOff(br.Stdout); err == nil {
				blockAll, blockKnown = v, true
			} else {
				r.sources[len(r.sources)-1].Error = err.Error()
			}
		}
	}
	switch {
	case blockKnown:
		details = append(details, fmt.Sprintf("block all incoming %v", blockAll))
	case alf.Active:
		details = append(details, "block all incoming unknown")
	}
	alf.InboundDefaultDeny = alf.Active && blockAll
	if alf.Active && !alf.InboundDefaultDeny {
		details = append(details, "signed and allowed apps may accept inbound connections")
	}
	if sr, ok := r.run(ctx, "socketfilterfw", "--getstealthmode"); ok {
		if v, err := parseALFOnOff(sr.Stdout); err == nil {
			details = append(details, fmt.Sprintf("stealth mode %v", v))
		} else {
			r.sources[len(r.sources)-1].Error = err.Error()
		}
	}
	alf.Detail = strings.Join(details, ", ")
	p.Backends = append(p.Backends, alf)

	if pr, ok := r.run(ctx, "pfctl", "-s", "info"); ok {
		if on, status, err := parsePfctlInfo(pr.Stdout); err == nil {
			p.Backends = append(p.Backends, Backend{Name: "pf", Active: on,
				Detail: status + "; ruleset not inspected, does not decide"})
		} else {
			r.sources[len(r.sources)-1].Error = err.Error()
		}
	}

	p.Enabled, p.InboundDefaultDeny, p.DecidedBy = alf.Active, alf.InboundDefaultDeny, "alf"
	return collectors.Result{Payload: p, Sources: r.sources}, nil
}
