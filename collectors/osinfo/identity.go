package osinfo

import (
	"bytes"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/evident-dev/evident/internal/safetext"
)

// placeholderSerials are what firmware holds when the vendor wrote no
// serial number (compared upper-cased). Two machines with the same one
// are not one machine, so none of them identifies a device.
var placeholderSerials = map[string]bool{
	"": true, "NONE": true, "N/A": true, "NA": true, "UNKNOWN": true, "INVALID": true, "DEFAULT STRING": true,
	"NOT SPECIFIED": true, "NOT APPLICABLE": true, "NOT AVAILABLE": true, "TO BE FILLED BY O.E.M.": true,
	"TO BE FILLED BY OEM": true, "SYSTEM SERIAL NUMBER": true, "CHASSIS SERIAL NUMBER": true,
	"BASE BOARD SERIAL NUMBER": true, "SERIAL NUMBER": true, "0123456789": true, "123456789": true,
	"1234567890": true, "OEM": true, "O.E.M.": true, "EMPTY": true,
}

// realSerial returns s trimmed, or "" when it is a placeholder (a known
// one, or one character repeated: "00000000", "XXXXXXXX", "........") or
// could not be shown as is (not UTF-8, a control character, over 256
// bytes): the server refuses such host facts, and a serial is not worth
// a device that cannot enroll.
func realSerial(s string) string {
	s = strings.TrimSpace(strings.Trim(s, "\x00"))
	if placeholderSerials[strings.ToUpper(s)] || len(s) > 256 || !utf8.ValidString(s) || !safetext.Printable(s) {
		return ""
	}
	if strings.Count(s, s[:1]) == len(s) {
		return ""
	}
	return s
}

// placeholderText reports a vendor or model string that says nothing.
func placeholderText(s string) bool {
	u := strings.ToUpper(strings.TrimSpace(s))
	return placeholderSerials[u] || u == "SYSTEM PRODUCT NAME" || u == "SYSTEM MANUFACTURER" || u == "SYSTEM VERSION"
}

// linuxModel names the model from SMBIOS: Lenovo puts the machine type
// in product_name ("20XW0055US") and the name people know in
// product_version ("ThinkPad X1 Carbon Gen 9").
func linuxModel(vendor, name, version string) string {
	switch {
	case placeholderText(name):
		return ""
	case strings.EqualFold(vendor, "LENOVO") && !placeholderText(version) && version != "":
		return version + " (" + name + ")"
	}
	return name
}

// parsePasswdName returns the name of uid in an /etc/passwd file.
func parsePasswdName(passwd []byte, uid string) string {
	for _, line := range bytes.Split(passwd, []byte("\n")) {
		f := strings.Split(string(line), ":")
		if len(f) >= 3 && f[2] == uid && !strings.HasPrefix(f[0], "#") {
			return f[0]
		}
	}
	return ""
}

// parseSeatActiveUID returns ACTIVE_UID of a systemd-logind seat file
// (/run/systemd/seats/seat0), "" without an active session.
func parseSeatActiveUID(seat []byte) string {
	for _, line := range strings.Split(string(seat), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ACTIVE_UID="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var (
	ioregSerialRE = regexp.MustCompile(`"IOPlatformSerialNumber"\s*=\s*"([^"]*)"`)
	ioregModelRE  = regexp.MustCompile(`"model"\s*=\s*<"([^"]*)">`)
	ioregMakerRE  = regexp.MustCompile(`"manufacturer"\s*=\s*<"([^"]*)">`)
)

// parseIOPlatformIdentity finds the serial number, model and manufacturer
// in `ioreg -rd1 -c IOPlatformExpertDevice` output.
func parseIOPlatformIdentity(s string) (serial, model, vendor string) {
	get := func(re *regexp.Regexp) string {
		if m := re.FindStringSubmatch(s); m != nil {
			return strings.TrimSpace(m[1])
		}
		return ""
	}
	return realSerial(get(ioregSerialRE)), get(ioregModelRE), get(ioregMakerRE)
}

// consoleUser drops the names that mean nobody is logged in at the
// screen: macOS's login window runs as root, and Windows may name only
// the domain.
func consoleUser(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || s == "root" || s == "_mbsetupuser" || s == "loginwindow" || strings.HasSuffix(s, `\`) {
		return ""
	}
	return s
}
