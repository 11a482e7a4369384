//go:build !unix

package platform

import "io/fs"

// ownerUID: Windows files have SIDs, not numeric owners.
func ownerUID(fs.FileInfo) *uint32 { return nil }
