// Package osinfo reports the host's identity and OS facts: hostname, OS
// family and version, kernel, architecture, boot time, machine id and
// virtualization, as gopsutil sees them.
package osinfo

import "time"

// Name is the collector name.
const Name = "osinfo"

// Payload is the collector's result.
type Payload struct {
	Hostname        string    `json:"hostname"`
	OS              string    `json:"os"`               // linux, darwin, windows
	Platform        string    `json:"platform"`         // debian, ubuntu, fedora, ...
	PlatformFamily  string    `json:"platform_family"`  // debian, rhel, ...
	PlatformVersion string    `json:"platform_version"` // 12.8
	KernelVersion   string    `json:"kernel_version"`
	KernelArch      string    `json:"kernel_arch"`
	BootTime        time.Time `json:"boot_time"`
	MachineID       string    `json:"machine_id,omitempty"`
	Virtualization  string    `json:"virtualization,omitempty"` // "kvm guest", "docker", ...
}
