package secureboot

import (
	"context"
	"errors"
	"fmt"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// globalGUID is EFI_GLOBAL_VARIABLE, the vendor GUID of SecureBoot and
// SetupMode.
const globalGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// shimGUID is SHIM_LOCK_GUID, the vendor GUID of shim's MokSBStateRT.
const shimGUID = "605dab50-e046-4300-abb6-3dd810dd8b23"

// parseEFIVar decodes a boolean UEFI variable as efivarfs exposes it: 4
// bytes of attributes (little endian) then the 1-byte value, 0 or 1. Any
// other value is an error, not "on": the spec defines no other.
func parseEFIVar(b []byte) (bool, error) {
	if len(b) != 5 {
		return false, fmt.Errorf("efivar: want 4 attribute bytes and 1 value byte, got %d bytes", len(b))
	}
	if b[4] > 1 {
		return false, fmt.Errorf("efivar: value %d is neither 0 nor 1", b[4])
	}
	return b[4] == 1, nil
}

// collectLinux reads /sys/firmware/efi. Without it the host booted in
// legacy BIOS mode: Secure Boot is not applicable and the result is ok.
// It has no build tag so it is tested on every OS.
func collectLinux(_ context.Context, host platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{}
	_, err := host.ReadDir("/sys/firmware/efi")
	switch {
	case platform.IsNotExist(err):
		res.Sources = append(res.Sources, collectors.Source{Kind: "file", Ref: "/sys/firmware/efi", Excerpt: "absent: legacy BIOS boot"})
		res.Payload = p
		return res, nil
	case err != nil:
		res.Sources = append(res.Sources, collectors.FileSource("/sys/firmware/efi", nil, err))
		res.Payload = p
		return res, err
	}
	p.UEFI = true
	var errs []error
	var readVar func(name, guid string) *bool
	read := func(name string) *bool { return readVar(name, globalGUID) }
	readVar = func(name, guid string) *bool {
		path := "/sys/firmware/efi/efivars/" + name + "-" + guid
		b, err := host.ReadFile(path, 64)
		if err == nil {
			v, perr := parseEFIVar(b)
			res.Sources = append(res.Sources, collectors.FileSource(path, []byte(fmt.Sprintf("% x", b)), perr))
			if perr != nil {
				errs = append(errs, perr)
				return nil
			}
			return &v
		}
		// Kernels without efivarfs mounted expose the older sysfs
		// interface, whose data file holds the value alone.
		old := "/sys/firmware/efi/vars/" + name + "-" + guid + "/data"
		if b2, err2 := host.ReadFile(old, 64); err2 == nil && len(b2) == 1 {
			res.Sources = append(res.Sources, collectors.FileSource(old, []byte(fmt.Sprintf("% x", b2)), nil))
			v := b2[0] != 0
			return &v
		}
		res.Sources = append(res.Sources, collectors.FileSource(path, nil, err))
		if !platform.IsNotExist(err) {
			errs = append(errs, err)
		}
		return nil
	}
	p.Enabled = read("SecureBoot")
	p.SetupMode = read("SetupMode")
	// shim (`mokutil --disable-validation`) keeps firmware Secure Boot on
	// but stops verifying what it loads: MokSBStateRT 1. Absent: shim
	// validates (or no shim).
	shimOff := readVar("MokSBStateRT", shimGUID)
	p.ShimValidation = ptrTo(shimOff == nil || !*shimOff)
	if shimOff != nil && *shimOff {
		p.Detail = "MokSBStateRT = 1: SecureBoot validation is disabled in shim"
	}
	res.Payload = p
	return res, errors.Join(errs...)
}

func ptrTo(b bool) *bool { return &b }
