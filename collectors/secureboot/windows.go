package secureboot

import (
	"context"
	"fmt"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// Windows records the Secure Boot state at boot in the registry.
const (
	secureBootStateKey  = `SYSTEM\CurrentControlSet\Control\SecureBoot\State`
	secureBootStateName = "UEFISecureBootEnabled"
)

// parseSecureBootState decodes UEFISecureBootEnabled (DWORD 1 on, 0 off).
func parseSecureBootState(v platform.RegistryValue) (bool, error) {
	if v.Type != "DWORD" && v.Type != "QWORD" {
		return false, fmt.Errorf("%s: want a DWORD, got %s", secureBootStateName, v.Type)
	}
	switch v.Int {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("%s: undocumented value %d", secureBootStateName, v.Int)
}

// collectWindows reads UEFISecureBootEnabled (live or a replayed
// snapshot). Windows writes the State key only when it booted from UEFI:
// without it the machine booted in legacy BIOS mode, Secure Boot is not
// applicable and the result is ok. It has no build tag: parsers and
// collection are tested on every OS.
func collectWindows(_ context.Context, host platform.Host) (collectors.Result, error) {
	ref := `HKLM\` + secureBootStateKey + `\` + secureBootStateName
	var res collectors.Result
	p := Payload{}
	v, err := host.Registry(secureBootStateKey, secureBootStateName)
	switch {
	case platform.IsNotExist(err):
		res.Sources = append(res.Sources, collectors.Source{Kind: "registry", Ref: ref, Excerpt: "absent: legacy BIOS boot"})
		p.Detail = ref + " absent: legacy BIOS boot"
		res.Payload = p
		return res, nil
	case err != nil:
		res.Sources = append(res.Sources, collectors.Source{Kind: "registry", Ref: ref, Error: err.Error()})
		return res, fmt.Errorf("read %s: %w", ref, err)
	}
	src := collectors.Source{Kind: "registry", Ref: ref, Excerpt: fmt.Sprintf("%s %d", v.Type, v.Int)}
	p.UEFI = true
	on, perr := parseSecureBootState(v)
	if perr != nil {
		src.Error = perr.Error()
		res.Sources = append(res.Sources, src)
		res.Payload = p
		return res, perr
	}
	res.Sources = append(res.Sources, src)
	p.Enabled = &on
	p.Detail = fmt.Sprintf("%s = %d", secureBootStateName, v.Int)
	res.Payload = p
	return res, nil
}
