package store

// Periods is what period reports need: every interval overlapping a period
// across the fleet, in one range query.
type Periods interface{}
