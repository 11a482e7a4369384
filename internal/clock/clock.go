// Package clock is the binaries' wall clock. In release builds Now is
// time.Now. Builds with the evidenttest tag (the end-to-end tests) shift it by
// EVIDENT_TEST_CLOCK_OFFSET, so a test can run a server and its agents on any
// day without waiting for it; a release binary cannot be shifted, because
// what it stamps (received_at, certificate validity, enrollment and waiver
// times) is time the server attests.
package clock

import "time"

// OffsetEnv names the variable that shifts the clock of evidenttest builds:
// a Go duration such as "9600h" or "-72h".
const OffsetEnv = "EVIDENT_TEST_CLOCK_OFFSET"

// FileEnv names a file whose content, a Go duration, shifts the clock of
// evidenttest builds further, re-read while they run: a test moves the
// clock of running servers and agents together (a simulated year of
// certificate renewals) by rewriting it.
const FileEnv = "EVIDENT_TEST_CLOCK_FILE"

// Now returns the wall clock, shifted by the test offset in evidenttest
// builds.
func Now() time.Time { return time.Now().Add(shift()) }
