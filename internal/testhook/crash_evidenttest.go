//go:build evidenttest

package testhook

import (
	"fmt"
	"os"
)

var crashAt = os.Getenv(CrashEnv)

// Crash exits the process at once when point is CrashEnv's.
func Crash(point string) {
	if point != "" && point == crashAt {
		fmt.Fprintf(os.Stderr, "testhook: crashing at %s\n", point)
		os.Exit(137)
	}
}
