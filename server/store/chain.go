package store

// Chain is the per-device hash chain over stored observations (DESIGN §6,
// tamper evidence).
type Chain interface{}
