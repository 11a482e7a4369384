// Package patches reports the patch level of the host: pending updates and
// pending security updates from the package manager, when the last update
// succeeded, whether a reboot is required, whether automatic updates are
// configured, and the OS release with its end-of-life date where known.
package patches

import "github.com/evident-dev/evident/proto/evidence"

// Name is the collector name.
const Name = evidence.Patches

// ParserVersion is the version of this parser: what it sends decodes on a
// server that knows it.
const ParserVersion = evidence.PatchesParserVersion

// Payload is the collector's result.
type Payload = evidence.PatchesPayload

// Package is one pending update.
type Package = evidence.Package

// OSRelease is the parsed /etc/os-release plus what Evident knows of its
// support window.
type OSRelease = evidence.OSRelease

// AutoUpdates says whether the host installs updates by itself.
type AutoUpdates = evidence.AutoUpdates

// PackageIndex is when the package manager last refreshed the index it
// compares installed packages with.
type PackageIndex = evidence.PackageIndex
