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
// (com.apple.alf.plist is not read: macOS 15 removed it). Its global state
// is the verdict: 0 is off ("open"); 1 (on, "specific services") and 2 (on,
// "block all incoming connections", "essential services only") are both
// "deny", the two values CIS macOS 2.2.1 accepts as "firewall enabled": in
// state 1 an unsolicited connection reaches only an application the
// firewall allows (signed or user-approved), never an unlisted one.
// Whether block-all must also be on is a server policy parameter, so the
// block-all and stealth settings are reported as facts (BlockAll,
// Stealth), not folded into the verdict. No state, no verdict: an
// unreadable or unparseable --getglobalstate is an error.
//
// pf is read for the record (`pfctl -s info`, which needs root), but its
// status does not decide: macOS enables pf with only Apple's anchors for
// features such as Internet Sharing, so "pf enabled" says nothing about
// inbound filtering without reading the ruleset.
func collectDarwin(ctx context.Context, host platform.Host) (collectors.Result, error) {
	r := &reader{host: host, missing: map[string]bool{}}
	p := Payload{Backends: []Backend{}}
	fail := func(err error) (collectors.Result, error) {
		p.Verdict, p.Reason = VerdictUnknown, "cannot read the Application Firewall state: "+err.Error()
		return collectors.Result{Payload: p, Sources: r.sources}, err
	}

	res, ok := r.run(ctx, "socketfilterfw", "--getglobalstate")
	if !ok {
		if r.missing["socketfilterfw"] {
			return fail(errors.New("socketfilterfw is not installed"))
		}
		if n := len(r.sources); n > 0 && r.sources[n-1].Error != "" {
			return fail(fmt.Errorf("socketfilterfw --getglobalstate failed: %s", r.sources[n-1].Error))
		}
		return fail(fmt.Errorf("socketfilterfw --getglobalstate exited %d", res.ExitCode))
	}
	state, err := parseALFGlobalState(res.Stdout)
	if err != nil {
		r.sources[len(r.sources)-1].Error = err.Error()
		return fail(err)
	}

	// Block all incoming connections is state 2 itself; in state 0 it is
	// not in force. In state 1 --getblockall is asked.
	var blockAll *bool
	switch state {
	case 0, 2:
		v := state == 2
		blockAll = &v
	case 1:
		if br, ok := r.run(ctx, "socketfilterfw", "--getblockall"); ok {
			if v, err := parseALFOnOff(br.Stdout); err == nil {
				blockAll = &v
			} else {
				r.sources[len(r.sources)-1].Error = err.Error()
			}
		}
	}
	var stealth *bool
	if sr, ok := r.run(ctx, "socketfilterfw", "--getstealthmode"); ok {
		if v, err := parseALFOnOff(sr.Stdout); err == nil {
			stealth = &v
		} else {
			r.sources[len(r.sources)-1].Error = err.Error()
		}
	}

	alf := alfBackend(state, blockAll, stealth)
	p.Backends = append(p.Backends, alf)
	p.Enabled, p.InboundDefaultDeny, p.DecidedBy = alf.Active, alf.InboundDefaultDeny, "alf"
	p.BlockAll, p.Stealth = blockAll, stealth
	p.Verdict, p.Reason = alfVerdict(state, blockAll, stealth)

	if pr, ok := r.run(ctx, "pfctl", "-s", "info"); ok {
		if on, status, err := parsePfctlInfo(pr.Stdout); err == nil {
			p.Backends = append(p.Backends, Backend{Name: "pf", Active: on,
				Detail: status + "; ruleset not inspected, does not decide"})
		} else {
			r.sources[len(r.sources)-1].Error = err.Error()
		}
	}
	return collectors.Result{Payload: p, Sources: r.sources}, nil
}

// alfVerdict is the verdict of a parsed ALF global state and the reason an
// auditor reads, e.g. "Application Firewall on (state 1); block all
// incoming off; stealth mode on".
func alfVerdict(state int, blockAll, stealth *bool) (verdict, reason string) {
	if state == 0 {
		return VerdictOpen, "Application Firewall off (state 0)"
	}
	return VerdictDeny, fmt.Sprintf("Application Firewall on (state %d); block all incoming %s; stealth mode %s",
		state, onOff(blockAll), onOff(stealth))
}

// alfBackend is the "alf" backend of a parsed global state.
func alfBackend(state int, blockAll, stealth *bool) Backend {
	b := Backend{Name: "alf", Active: state >= 1}
	b.InboundDefaultDeny = b.Active
	details := []string{fmt.Sprintf("global state %d", state),
		"block all incoming " + onOff(blockAll), "stealth mode " + onOff(stealth)}
	if state == 1 && (blockAll == nil || !*blockAll) {
		details = append(details, "only signed and allowed apps accept inbound connections")
	}
	b.Detail = strings.Join(details, ", ")
	return b
}

func onOff(v *bool) string {
	switch {
	case v == nil:
		return "unknown"
	case *v:
		return "on"
	}
	return "off"
}
