// Package secureboot reports whether the host booted with UEFI Secure Boot
// enforcing (Linux: efivars SecureBoot and SetupMode variables).
package secureboot

import "github.com/evident-dev/evident/proto/evidence"

// Name is the collector name.
const Name = evidence.SecureBoot

// ParserVersion is the version of this parser: what it sends decodes on a
// server that knows it.
const ParserVersion = evidence.SecureBootParserVersion

// Payload is the collector's result.
type Payload = evidence.SecureBootPayload
