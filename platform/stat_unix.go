//go:build unix

package platform

import (
	"io/fs"
	"syscall"
)

func ownerUID(fi fs.FileInfo) *uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		u := uint32(st.Uid)
		return &u
	}
	return nil
}
