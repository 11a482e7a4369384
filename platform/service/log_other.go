//go:build !windows

package service

import (
	"io"

	kservice "github.com/kardianos/service"
)

// systemLog is nil: systemd's journal and launchd's log file capture stderr.
func systemLog(kservice.Service) io.Writer { return nil }
