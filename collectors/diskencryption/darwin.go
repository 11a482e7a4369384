package diskencryption

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// collectDarwin reads a darwin host (live or a replayed snapshot). It has no build
// tag: parsers and collection are tested on every OS.
//
// `fdesetup status` says whether FileVault protects the boot volume group
// and whether it is converting; `diskutil apfs list -plist` lists every
// APFS volume with its roles and FileVault flag. The Data volume (role
// Data) holds user data and is the one that counts; the System volume is a
// sealed, read-only snapshot and the Preboot/Recovery/VM volumes hold no
// user data, so they are exempt with a reason. Volumes without a role
// (created by the user) count as data volumes and are judged by their own
// FileVault flag.
func collectDarwin(ctx context.Context, host platform.Host) (collectors.Result, error) {
	var res collectors.Result
	p := Payload{Volumes: []Volume{}}
	var errs []string

	var fv *fileVault
	if r, err := host.Run(ctx, "fdesetup", "status"); err != nil {
		errs = append(errs, darwinRunErr(&res, []string{"fdesetup", "status"}, err))
	} else {
		src := collectors.CommandSource(r, append(r.Stdout, r.Stderr...))
		// Exit 2 is "conversion in progress", not a failure.
		if r.ExitCode != 0 && r.ExitCode != 2 {
			src.Error = fmt.Sprintf("exit code %d", r.ExitCode)
			errs = append(errs, fmt.Sprintf("fdesetup status exited %d", r.ExitCode))
		} else if f, err := parseFdesetupStatus(r.Stdout); err != nil {
			src.Error = err.Error()
			errs = append(errs, err.Error())
		} else {
			fv = &f
		}
		res.Sources = append(res.Sources, src)
	}

	var vols []apfsVolume
	listed := false
	argv := []string{"diskutil", "apfs", "list", "-plist"}
	if r, err := host.Run(ctx, argv...); err != nil {
		errs = append(errs, darwinRunErr(&res, argv, err))
	} else {
		src := collectors.CommandSource(r, nil)
		if r.ExitCode != 0 {
			src.Excerpt = collectors.Excerpt(r.Stderr)
			src.Error = fmt.Sprintf("exit code %d", r.ExitCode)
			errs = append(errs, fmt.Sprintf("diskutil apfs list exited %d", r.ExitCode))
		} else if v, err := parseAPFSList(r.Stdout); err != nil {
			src.Excerpt = collectors.Excerpt(r.Stdout)
			src.Error = err.Error()
			errs = append(errs, err.Error())
		} else {
			vols, listed = v, true
			src.Excerpt = darwinVolumeSummary(v)
		}
		res.Sources = append(res.Sources, src)
	}

	for _, av := range vols {
		v := Volume{Device: "/dev/" + av.Device, FSType: "apfs", Role: "data"}
		if av.FileVault {
			v.Method = "FileVault"
		}
		role, reason := darwinExempt(av.Roles)
		if role != "" {
			v.Role, v.Exempt, v.ExemptReason = role, true, reason
			v.Encrypted = av.FileVault
			p.Volumes = append(p.Volumes, v)
			continue
		}
		if slices.Contains(av.Roles, "Data") && fv != nil {
			// The boot Data volume: fdesetup decides its state, since
			// the FileVault flag is already set while it converts.
			v.State, v.Detail = fv.State, fv.Detail
			v.Encrypted = fv.State == "encrypted" && av.FileVault
			if fv.State == "encrypted" && !av.FileVault {
				// Another macOS install's Data volume, or a mismatch:
				// trust the volume's own flag.
				v.State = "off"
			}
		} else {
			v.Encrypted = av.FileVault
			v.State = "off"
			if av.FileVault {
				v.State = "encrypted"
			}
			if av.Locked {
				v.Detail = "locked"
			}
		}
		p.Volumes = append(p.Volumes, v)
	}

	// Without the volume list, fdesetup alone still decides the boot
	// volume group.
	if !listed && fv != nil {
		p.Volumes = append(p.Volumes, Volume{
			Device: "boot volume group", FSType: "apfs", Role: "data",
			Encrypted: fv.State == "encrypted", Method: "FileVault",
			State: fv.State, Detail: fv.Detail,
		})
	}
	res.Payload = p
	if fv == nil && !listed {
		return res, fmt.Errorf("could not read FileVault state: %s", strings.Join(errs, "; "))
	}
	return res, nil
}

// darwinRunErr records a command that could not be run and returns why.
func darwinRunErr(res *collectors.Result, argv []string, err error) string {
	ref := strings.Join(argv, " ")
	if errors.Is(err, platform.ErrCommandNotFound) {
		return ref + ": not installed"
	}
	res.Sources = append(res.Sources, collectors.Source{Kind: "command", Ref: ref, Error: err.Error()})
	return ref + ": " + err.Error()
}

// darwinVolumeSummary is the excerpt of the APFS list: one line per volume
// rather than kilobytes of XML.
func darwinVolumeSummary(vs []apfsVolume) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "%s %q roles=%s FileVault=%v Encryption=%v Locked=%v\n",
			v.Device, v.Name, strings.Join(v.Roles, ","), v.FileVault, v.Encryption, v.Locked)
	}
	return collectors.Excerpt([]byte(b.String()))
}
