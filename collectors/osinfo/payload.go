// Package osinfo reports the host's identity and OS facts: hostname, OS
// family and version, kernel, architecture, boot time, machine id and
// virtualization, as gopsutil sees them.
package osinfo

import "github.com/evident-dev/evident/proto/evidence"

// Name is the collector name.
const Name = evidence.OSInfo

// ParserVersion is the version of this parser: what it sends decodes on a
// server that knows it.
const ParserVersion = evidence.OSInfoParserVersion

// Payload is the collector's result.
type Payload = evidence.OSInfoPayload
