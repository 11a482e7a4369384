package evidence

import "time"

// OSInfo names the OS facts collector.
const OSInfo = "osinfo"

// OSInfoParserVersion is the osinfo parser of today's agent.
//
//	v1: every fact from gopsutil on the live machine
//	v2: Linux facts read through the host (files under its root), so a
//	    recorded snapshot replays to the live result
const OSInfoParserVersion = 2

// OSInfoPayload is the osinfo collector's result.
type OSInfoPayload struct {
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
