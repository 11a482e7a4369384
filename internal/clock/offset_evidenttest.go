//go:build evidenttest

package clock

import (
	"fmt"
	"os"
	"time"
)

// offset is read once, when the binary starts. A value that is not a
// duration stops the binary there: a test that meant to shift the clock must
// not silently run on today's date.
var offset = mustOffset(os.Getenv(OffsetEnv))

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
