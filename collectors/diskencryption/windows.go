package diskencryption

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// BitLocker is read from the Win32_EncryptableVolume class of the BitLocker
// WMI provider. The query names only properties of the class (Windows 8 and
// later): EncryptionPercentage is not one, it is an out parameter of the
// GetConversionStatus method, and naming it makes the whole query invalid.
const (
	bitlockerNamespace = `root\CIMV2\Security\MicrosoftVolumeEncryption`
	bitlockerQuery     = "SELECT DeviceID, DriveLetter, VolumeType, ProtectionStatus, ConversionStatus, EncryptionMethod FROM Win32_EncryptableVolume"
)

// encryptableVolume is one Win32_EncryptableVolume row. Field names are the
// WMI property names; pointers are nil when the provider returns NULL in a
// replayed snapshot. Caveat: the live door uses the WMI library's default
// client, whose PtrNil is false, so a NULL there arrives as a pointer to 0
// (ConversionStatus 0 reads FullyDecrypted: still "not encrypted", which is
// the safe side, but with a misleading Detail).
//
// Known limitation: ProtectionStatus and ConversionStatus are the provider's
// cached properties. Microsoft documents the GetProtectionStatus and
// GetConversionStatus methods as the way to read the current state, and the
// cached property can lag behind them (e.g. just after protection is
// suspended or resumed). The WMI door of platform.Host runs queries only, not
// method calls, so the properties are what this collector can read.
type encryptableVolume struct {
	DeviceID         string
	DriveLetter      *string
	VolumeType       *uint32
	ProtectionStatus *uint32
	ConversionStatus *uint32
	EncryptionMethod *uint32
}

// Win32_EncryptableVolume codes (GetConversionStatus, GetProtectionStatus,
// GetEncryptionMethod and the VolumeType property on learn.microsoft.com).
var (
	conversionNames = map[uint32]string{0: "FullyDecrypted", 1: "FullyEncrypted", 2: "EncryptionInProgress",
		3: "DecryptionInProgress", 4: "EncryptionPaused", 5: "DecryptionPaused"}
	protectionNames = map[uint32]string{0: "off", 1: "on", 2: "unknown"}
	methodNames     = map[uint32]string{1: "AES 128 with Diffuser", 2: "AES 256 with Diffuser", 3: "AES 128",
		4: "AES 256", 5: "Hardware Encryption", 6: "XTS-AES 128", 7: "XTS-AES 256"}
)

const (
	volumeOS        = 0
	volumeFixedData = 1
	volumeRemovable = 2
)

// parseEncryptableVolumes turns Win32_EncryptableVolume rows into volumes. A
// volume is Encrypted only when it is FullyEncrypted and its protection is on:
// a fully encrypted volume with protection off has its key in the clear on
// disk (BitLocker suspended) and is reported as State "paused".
func parseEncryptableVolumes(rows []encryptableVolume) []Volume {
	out := make([]Volume, 0, len(rows))
	for _, r := range rows {
		v := Volume{Device: r.DeviceID, Role: "data"}
		if r.DriveLetter != nil && *r.DriveLetter != "" {
			v.Mountpoints = []string{*r.DriveLetter}
		}
		if r.VolumeType != nil {
			switch *r.VolumeType {
			case volumeOS:
				v.Role = "system"
			case volumeRemovable:
				v.Exempt, v.ExemptReason = true, "removable"
			}
		}
		if r.EncryptionMethod != nil && *r.EncryptionMethod != 0 {
			name, ok := methodNames[*r.EncryptionMethod]
			if !ok {
				name = fmt.Sprintf("method %d", *r.EncryptionMethod)
			}
			v.Method = "BitLocker " + name
		}
		var detail []string
		if r.ConversionStatus != nil {
			detail = append(detail, fmt.Sprintf("ConversionStatus %d (%s)", *r.ConversionStatus, codeName(conversionNames, *r.ConversionStatus)))
		} else {
			detail = append(detail, "ConversionStatus not reported")
		}
		if r.ProtectionStatus != nil {
			detail = append(detail, fmt.Sprintf("ProtectionStatus %d (%s)", *r.ProtectionStatus, codeName(protectionNames, *r.ProtectionStatus)))
		} else {
			detail = append(detail, "ProtectionStatus not reported")
		}
		prot := uint32(2)
		if r.ProtectionStatus != nil {
			prot = *r.ProtectionStatus
		}
		if r.ConversionStatus != nil {
			switch *r.ConversionStatus {
			case 0:
				v.State = "off"
			case 1:
				switch prot {
				case 1:
					v.State, v.Encrypted = "encrypted", true
				case 0:
					v.State = "paused"
					detail = append(detail, "BitLocker protection is suspended: the key is stored in the clear on the volume")
				default:
					detail = append(detail, "protection status unknown (the volume may be locked)")
				}
			case 2:
				v.State = "encrypting"
			case 3:
				v.State = "decrypting"
			case 4:
				v.State = "encrypting"
				detail = append(detail, "encryption paused")
			case 5:
				v.State = "decrypting"
				detail = append(detail, "decryption paused")
			}
		}
		v.Detail = strings.Join(detail, ", ")
		out = append(out, v)
	}
	return out
}

func codeName(m map[uint32]string, c uint32) string {
	if n, ok := m[c]; ok {
		return n
	}
	return "undocumented"
}

// collectWindows reads BitLocker through WMI (live or a replayed snapshot).
// It has no build tag: parsers and collection are tested on every OS.
func collectWindows(ctx context.Context, host platform.Host) (collectors.Result, error) {
	var rows []encryptableVolume
	err := host.WMI(ctx, bitlockerNamespace, bitlockerQuery, &rows)
	src := collectors.Source{Kind: "wmi", Ref: bitlockerNamespace + ": " + bitlockerQuery}
	if err != nil {
		src.Error = err.Error()
		res := collectors.Result{Sources: []collectors.Source{src}}
		if platform.IsNotExist(err) {
			// No BitLocker provider (e.g. a Server without the BitLocker
			// feature): nothing can be said about the volumes.
			return res, fmt.Errorf("BitLocker WMI provider not available: %w", err)
		}
		return res, fmt.Errorf("read Win32_EncryptableVolume: %w", err)
	}
	b, _ := json.Marshal(rows)
	src.Excerpt = collectors.Excerpt(b)
	if len(rows) == 0 {
		src.Excerpt = "no rows"
	}
	p := Payload{Volumes: parseEncryptableVolumes(rows)}
	return collectors.Result{Payload: p, Sources: []collectors.Source{src}}, nil
}
