package store

import (
	"context"
	"time"
)

// Periods is what period reports need: every interval overlapping a period
// across the fleet, in one range query.
type Periods interface {
	// StatesOverlapping calls fn for every control interval that overlaps
	// [from, to) (since < to, and open or until > from), across all
	// devices, ordered by device id, control id and since. Evidence is
	// left nil: a report needs it only for a few devices, and reads it
	// with StateHistory. fn must not call the store (the scan holds a
	// connection); an error from fn stops the scan and is returned.
	StatesOverlapping(ctx context.Context, from, to time.Time, fn func(DeviceState) error) error
	// DevicesReportedBetween returns the ids of the devices with at least
	// one observation received (server time) in [from, to).
	DevicesReportedBetween(ctx context.Context, from, to time.Time) (map[string]bool, error)
}

// DeviceState is one control interval of one device.
type DeviceState struct {
	DeviceID string
	ControlState
}
