//go:build !evidenttest

package clock

import (
	"testing"
	"time"
)

// TestReleaseIgnoresOffset: a release build's clock is the wall clock,
// whatever the environment says.
func TestReleaseIgnoresOffset(t *testing.T) {
	t.Setenv(OffsetEnv, "9600h")
	before := time.Now()
	now := Now()
	if now.Before(before) || now.Sub(before) > time.Minute {
		t.Fatalf("Now() = %s; want the wall clock %s", now, before)
	}
}
