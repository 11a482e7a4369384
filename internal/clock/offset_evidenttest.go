//go:build evidenttest

package clock

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// offset is read once, when the binary starts. A value that is not a
// duration stops the binary there: a test that meant to shift the clock must
// not silently run on today's date.
var offset = mustOffset(os.Getenv(OffsetEnv))

// clockFile is FileEnv's file ("" without one); its shift is re-read at
// most every fileEvery.
var (
	clockFile = os.Getenv(FileEnv)
	fileMu    sync.Mutex
	fileShift time.Duration
	fileRead  time.Time
)

const fileEvery = 10 * time.Millisecond

// shift is the offset plus the clock file's shift. A file that cannot be
// read or parsed (being replaced) keeps the last shift read.
func shift() time.Duration {
	if clockFile == "" {
		return offset
	}
	fileMu.Lock()
	defer fileMu.Unlock()
	if now := time.Now(); now.Sub(fileRead) >= fileEvery {
		fileRead = now
		if b, err := os.ReadFile(clockFile); err == nil {
			if d, err := parseOffset(strings.TrimSpace(string(b))); err == nil {
				fileShift = d
			}
		}
	}
	return offset + fileShift
}

func mustOffset(s string) time.Duration {
	d, err := parseOffset(s)
	if err != nil {
		panic(err)
	}
	return d
}

// parseOffset reads OffsetEnv's value; empty means no shift.
func parseOffset(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a Go duration (e.g. 9600h or -72h): %w", OffsetEnv, s, err)
	}
	return d, nil
}
