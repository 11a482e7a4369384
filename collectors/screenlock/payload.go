// Package screenlock reports whether the screen locks after inactivity and
// asks for a password on wake: GNOME's dconf system policy on Linux desktops
// (servers without a graphical session are not applicable), sysadminctl and
// the managed screensaver preferences on macOS, and the machine inactivity
// limit policy on Windows.
package screenlock

import "github.com/evident-dev/evident/proto/evidence"

// Name is the collector name.
const Name = evidence.ScreenLock

// ParserVersion is the version of this parser: what it sends decodes on a
// server that knows it.
const ParserVersion = evidence.ScreenLockParserVersion

// Payload is the collector's result.
type Payload = evidence.ScreenLockPayload
