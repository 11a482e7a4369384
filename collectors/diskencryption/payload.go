// Package diskencryption reports, for every fixed volume, whether it is
// encrypted at rest and how (LUKS/dm-crypt on Linux; FileVault and BitLocker
// in later issues), and which volumes are exempt and why.
package diskencryption

import "github.com/evident-dev/evident/proto/evidence"

// Name is the collector name.
const Name = evidence.DiskEncryption

// ParserVersion is the version of this parser: what it sends decodes on a
// server that knows it.
const ParserVersion = evidence.DiskEncryptionParserVersion

// Payload is the collector's result.
type Payload = evidence.DiskEncryptionPayload

// Volume is one block device that holds (or could hold) data at rest.
type Volume = evidence.DiskVolume
