//go:build windows

package service

import (
	"io"
	"strings"

	kservice "github.com/kardianos/service"
)

// eventLog writes the agent's log lines (slog text format, one per write)
// to the Windows Event Log, at the line's level: a service's stderr goes
// nowhere on Windows.
type eventLog struct{ l kservice.Logger }

func (e eventLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	var err error
	switch {
	case strings.Contains(line, "level=ERROR"):
		err = e.l.Error(line)
	case strings.Contains(line, "level=WARN"):
		err = e.l.Warning(line)
	default:
		err = e.l.Info(line)
	}
	return len(p), err
}

func systemLog(s kservice.Service) io.Writer {
	l, err := s.SystemLogger(nil)
	if err != nil {
		return nil
	}
	return eventLog{l}
}
