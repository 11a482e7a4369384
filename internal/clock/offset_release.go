//go:build !evidenttest

package clock

import "time"

// shift is zero in release builds: OffsetEnv and FileEnv are ignored.
func shift() time.Duration { return 0 }
