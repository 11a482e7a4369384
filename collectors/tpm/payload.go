// Package tpm reports whether a TPM is present and its version
// (/sys/class/tpm on Linux). Attestation with quotes comes in a later issue.
package tpm

import "github.com/evident-dev/evident/proto/evidence"

// Name is the collector name.
const Name = evidence.TPM

// ParserVersion is the version of this parser: what it sends decodes on a
// server that knows it.
const ParserVersion = evidence.TPMParserVersion

// Payload is the collector's result.
type Payload = evidence.TPMPayload

// Device is one TPM character device.
type Device = evidence.TPMDevice
