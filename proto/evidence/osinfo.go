package evidence

import "time"

// OSInfo names the OS facts collector.
const OSInfo = "osinfo"

// OSInfoParserVersion is the osinfo parser of today's agent.
//
//	v1: every fact from gopsutil on the live machine
//	v2: Linux facts read through the host (files under its root), so a
//	    recorded snapshot replays to the live result
//	v3: the hardware's serial number, vendor and model, and the user at
//	    the console
const OSInfoParserVersion = 3

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
	// SerialNumber is the machine's serial number as its firmware gives
	// it (SMBIOS, the device tree, IOPlatformSerialNumber, Win32_BIOS),
	// what IT inventories know a machine by; "" when there is none or the
	// firmware holds a placeholder ("To Be Filled By O.E.M."). Parser v3.
	SerialNumber   string `json:"serial_number,omitempty"`
	HardwareVendor string `json:"hardware_vendor,omitempty"` // "LENOVO", "Apple Inc.", "Dell Inc."
	HardwareModel  string `json:"hardware_model,omitempty"`  // "ThinkPad X1 Carbon Gen 9 (20XW0055US)", "MacBookPro18,1"
	// ConsoleUser is the user logged in at the machine's own screen,
	// when the OS says (a seat's active session, /dev/console's owner,
	// Win32_ComputerSystem.UserName); "" on a server or at a login
	// window. Parser v3.
	ConsoleUser string `json:"console_user,omitempty"`
}
