//go:build !unix

package ingest

// fdLimit is 0 where the open-file limit cannot be read: only the
// per-source limit applies.
func fdLimit() int { return 0 }
