package osinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// Windows OS facts come from WMI. Each query string lives in one constant
// so tests and host snapshots use the identical text.
const (
	cimv2Namespace = `root\CIMV2`
	winOSQuery     = "SELECT Caption, Version, BuildNumber, LastBootUpTime, OSArchitecture, CSName FROM Win32_OperatingSystem"
	productQuery   = "SELECT UUID FROM Win32_ComputerSystemProduct"
	biosQuery      = "SELECT SerialNumber FROM Win32_BIOS"
	systemQuery    = "SELECT Manufacturer, Model, UserName FROM Win32_ComputerSystem"
)

// win32BIOS is one Win32_BIOS row.
type win32BIOS struct {
	SerialNumber string
}

// win32System is one Win32_ComputerSystem row. UserName is the user at the
// console ("DOMAIN\user"), empty when nobody is logged in there.
type win32System struct {
	Manufacturer string
	Model        string
	UserName     string
}

// win32OS is one Win32_OperatingSystem row. LastBootUpTime is a CIM
// datetime, which the WMI library decodes into a time.Time.
type win32OS struct {
	Caption        string
	Version        string
	BuildNumber    string
	LastBootUpTime time.Time
	OSArchitecture string
	CSName         string
}

// win32Product is one Win32_ComputerSystemProduct row.
type win32Product struct {
	UUID string
}

// windowsArch maps OSArchitecture, which is localized ("64-bit", "64 bits",
// "64 ビット", "ARM 64-bit Processor"), to uname-style names by its digits and
// the ARM marker only.
func windowsArch(s string) string {
	arm := strings.Contains(strings.ToUpper(s), "ARM")
	switch {
	case strings.Contains(s, "64") && arm:
		return "arm64"
	case strings.Contains(s, "64"):
		return "x86_64"
	case strings.Contains(s, "32") && arm:
		return "arm"
	case strings.Contains(s, "32"):
		return "i386"
	}
	return ""
}

// windowsMachineID returns the SMBIOS UUID, or "" for the placeholders
// firmware writes when it has none.
func windowsMachineID(uuid string) string {
	u := strings.ToUpper(strings.TrimSpace(uuid))
	if strings.Trim(u, "-0") == "" || strings.Trim(u, "-F") == "" {
		return ""
	}
	return u
}

// collectWindows reads Win32_OperatingSystem and Win32_ComputerSystemProduct
// (live or a replayed snapshot). It has no build tag: it is tested on every
// OS.
func collectWindows(ctx context.Context, h platform.Host) (collectors.Result, error) {
	var res collectors.Result
	var oses []win32OS
	err := h.WMI(ctx, cimv2Namespace, winOSQuery, &oses)
	res.Sources = append(res.Sources, wmiSource(winOSQuery, oses, err))
	if err != nil {
		return res, fmt.Errorf("read Win32_OperatingSystem: %w", err)
	}
	if len(oses) == 0 {
		return res, fmt.Errorf("Win32_OperatingSystem returned no rows")
	}
	o := oses[0]
	p := Payload{
		Hostname:        strings.TrimSpace(o.CSName),
		OS:              "windows",
		Platform:        strings.TrimSpace(o.Caption),
		PlatformFamily:  "windows",
		PlatformVersion: strings.TrimSpace(o.Version),
		KernelVersion:   strings.TrimSpace(o.Version),
		KernelArch:      windowsArch(o.OSArchitecture),
	}
	if !o.LastBootUpTime.IsZero() {
		p.BootTime = o.LastBootUpTime.UTC()
	}
	var products []win32Product
	err = h.WMI(ctx, cimv2Namespace, productQuery, &products)
	res.Sources = append(res.Sources, wmiSource(productQuery, products, err))
	if err == nil && len(products) > 0 {
		p.MachineID = windowsMachineID(products[0].UUID)
	}
	productErr := err
	// Hardware identity (parser v3): a snapshot recorded by an older agent
	// has neither query, and says nothing of them.
	var bios []win32BIOS
	if err := h.WMI(ctx, cimv2Namespace, biosQuery, &bios); !platform.IsNotExist(err) {
		res.Sources = append(res.Sources, wmiSource(biosQuery, bios, err))
		if err == nil && len(bios) > 0 {
			p.SerialNumber = realSerial(bios[0].SerialNumber)
		}
	}
	var systems []win32System
	if err := h.WMI(ctx, cimv2Namespace, systemQuery, &systems); !platform.IsNotExist(err) {
		res.Sources = append(res.Sources, wmiSource(systemQuery, systems, err))
		if err == nil && len(systems) > 0 {
			s := systems[0]
			if !placeholderText(s.Manufacturer) {
				p.HardwareVendor = strings.TrimSpace(s.Manufacturer)
			}
			if !placeholderText(s.Model) {
				p.HardwareModel = strings.TrimSpace(s.Model)
			}
			p.ConsoleUser = consoleUser(s.UserName)
		}
	}
	res.Payload = p
	if productErr != nil && !platform.IsNotExist(productErr) {
		return res, fmt.Errorf("read Win32_ComputerSystemProduct: %w", productErr)
	}
	return res, nil
}

func wmiSource(query string, rows any, err error) collectors.Source {
	s := collectors.Source{Kind: "wmi", Ref: cimv2Namespace + ": " + query}
	if err != nil {
		s.Error = err.Error()
		return s
	}
	b, _ := json.Marshal(rows)
	s.Excerpt = collectors.Excerpt(b)
	return s
}
