package secureboot

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
// Macs have no UEFI Secure Boot variables; Apple's own secure boot chain
// (Apple silicon, or the T2 chip on Intel) is treated as the UEFI
// equivalent, so UEFI is true and Enabled says whether it enforces.
//
//   - Apple silicon (`sysctl -n hw.optional.arm64` is 1) always boots
//     through Apple Secure Boot. Its policy is only readable with `bputil
//     -d`, which needs root and user authentication, so the level is
//     inferred: "full" while SIP is fully on, "permissive" when SIP is
//     disabled or customised (Apple silicon allows that only under
//     Permissive Security). The Detail says it is inferred.
//   - Intel with T2: `system_profiler SPiBridgeDataType` prints "Secure
//     Boot: Full Security | Medium Security | No Security".
//   - Intel without T2: no secure boot, Enabled false.
//
// SIP comes from `csrutil status`; a custom configuration counts as off.
func collectDarwin(ctx context.Context, host platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{UEFI: true}
	ran := map[string]bool{}
	run := func(argv ...string) ([]byte, bool) {
		r, err := host.Run(ctx, argv...)
		if err != nil {
			if !errors.Is(err, platform.ErrCommandNotFound) {
				res.Sources = append(res.Sources, collectors.Source{Kind: "command", Ref: strings.Join(argv, " "), Error: err.Error()})
			}
			return nil, false
		}
		ran[argv[0]] = true
		ex := r.Stdout
		if r.ExitCode != 0 {
			ex = r.Stderr
		}
		res.Sources = append(res.Sources, collectors.CommandSource(r, ex))
		return r.Stdout, r.ExitCode == 0
	}

	var sip *sipStatus
	var details []string
	if out, ok := run("csrutil", "status"); ok {
		if s, err := parseCsrutilStatus(out); err == nil {
			sip = &s
			p.SIP = &s.Enabled
			d := "SIP " + strings.TrimSuffix(strings.TrimPrefix(s.Line, "System Integrity Protection status: "), ".")
			if len(s.Disabled) > 0 {
				d += " (off: " + strings.Join(s.Disabled, ", ") + ")"
			}
			details = append(details, d)
		} else {
			res.Sources[len(res.Sources)-1].Error = err.Error()
		}
	}

	// Intel Macs have no hw.optional.arm64 (sysctl exits non-zero): not
	// arm64, as long as sysctl ran at all.
	out, _ := run("sysctl", "-n", "hw.optional.arm64")
	arm := strings.TrimSpace(string(out)) == "1"
	t2, spRead := "", false
	if !arm {
		if out, ok := run("system_profiler", "SPiBridgeDataType"); ok {
			t2, spRead = parseSecureBootLine(out), true
		}
	}

	enabled := false
	switch {
	case !arm && !spRead:
		// Neither Apple silicon nor a readable T2 answer: unknown.
		p.Detail = strings.Join(append(details, "secure boot not readable (sysctl/system_profiler unavailable)"), "; ")
		res.Payload = p
		return res, errors.New("secure boot state could not be read")
	case arm && sip == nil:
		p.Level, enabled = "full", true
		details = append(details, "Apple silicon: Apple Secure Boot; level assumed full (bputil -d needs root; SIP unknown)")
	case arm && sip.Enabled:
		p.Level, enabled = "full", true
		details = append(details, "Apple silicon: Apple Secure Boot; level inferred full (bputil -d needs root)")
	case arm:
		p.Level = "permissive"
		details = append(details, "Apple silicon: Apple Secure Boot; level inferred permissive because SIP is not fully enabled")
	case t2 != "":
		lvl, ok := t2Level(t2)
		if !ok {
			p.Detail = strings.Join(append(details, "T2 Secure Boot: unknown setting "+t2), "; ")
			res.Payload = p
			return res, fmt.Errorf("system_profiler: unknown Secure Boot setting %q", t2)
		}
		p.Level, enabled = lvl, lvl != "none"
		details = append(details, "T2 Secure Boot: "+t2)
	default:
		details = append(details, "Intel Mac without a T2 chip: no Apple Secure Boot")
	}
	p.Enabled = &enabled
	p.Detail = strings.Join(details, "; ")
	res.Payload = p
	if sip == nil {
		return res, errors.New("csrutil status could not be read")
	}
	return res, nil
}
