package tpm

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// The TPM is read from the Win32_Tpm class of the TPM WMI provider (which
// needs administrator rights; the agent runs as LocalSystem).
const (
	tpmNamespace = `root\CIMV2\Security\MicrosoftTpm`
	tpmQuery     = "SELECT IsActivated_InitialValue, IsEnabled_InitialValue, IsOwned_InitialValue, SpecVersion, ManufacturerIdTxt, ManufacturerVersion FROM Win32_Tpm"
)

// win32Tpm is one Win32_Tpm row; field names are the WMI property names,
// underscores included.
type win32Tpm struct {
	IsActivated_InitialValue bool
	IsEnabled_InitialValue   bool
	IsOwned_InitialValue     bool
	SpecVersion              string
	ManufacturerIdTxt        string
	ManufacturerVersion      string
}

// parseSpecVersion returns the TPM family of a Win32_Tpm SpecVersion,
// "<family>, <level>, <revision>" (e.g. "2.0, 0, 1.59" → "2.0"), or "" when
// the first field is not a "major.minor" version.
func parseSpecVersion(s string) string {
	first, _, _ := strings.Cut(s, ",")
	first = strings.TrimSpace(first)
	major, minor, ok := strings.Cut(first, ".")
	if !ok || len(major) == 0 || len(major) > 3 || len(minor) == 0 || len(minor) > 3 {
		return ""
	}
	if _, err := strconv.ParseUint(major, 10, 16); err != nil {
		return ""
	}
	if _, err := strconv.ParseUint(minor, 10, 16); err != nil {
		return ""
	}
	return first
}

// parseWin32Tpm turns Win32_Tpm rows into the payload. No row means no TPM
// (or one disabled in firmware, which Windows does not list).
func parseWin32Tpm(rows []win32Tpm) Payload {
	p := Payload{}
	for i, r := range rows {
		d := Device{Name: "tpm" + strconv.Itoa(i), Version: parseSpecVersion(r.SpecVersion),
			Manufacturer: strings.TrimSpace(strings.Trim(r.ManufacturerIdTxt, "\x00"))}
		d.Description = fmt.Sprintf("SpecVersion %q, firmware %s, enabled %v, activated %v, owned %v",
			r.SpecVersion, r.ManufacturerVersion, r.IsEnabled_InitialValue, r.IsActivated_InitialValue, r.IsOwned_InitialValue)
		p.Devices = append(p.Devices, d)
		if d.Version == "2.0" || p.Version == "" {
			p.Version = d.Version
		}
	}
	p.Present = len(p.Devices) > 0
	return p
}

// collectWindows reads Win32_Tpm (live or a replayed snapshot). A missing
// class or namespace is an error, not "no TPM": the provider exists on
// every supported Windows, so its absence means the read failed. It has no
// build tag: parsers and collection are tested on every OS.
func collectWindows(ctx context.Context, host platform.Host) (collectors.Result, error) {
	var rows []win32Tpm
	err := host.WMI(ctx, tpmNamespace, tpmQuery, &rows)
	src := collectors.Source{Kind: "wmi", Ref: tpmNamespace + ": " + tpmQuery}
	if err != nil {
		src.Error = err.Error()
		return collectors.Result{Sources: []collectors.Source{src}}, fmt.Errorf("read Win32_Tpm: %w", err)
	}
	b, _ := json.Marshal(rows)
	src.Excerpt = collectors.Excerpt(b)
	if len(rows) == 0 {
		src.Excerpt = "no rows: no TPM"
	}
	return collectors.Result{Payload: parseWin32Tpm(rows), Sources: []collectors.Source{src}}, nil
}
