// Package evidence is the contract between the agent and the server: what
// one collection produces (Observation, Status, Source), the name of every
// collector, the payload type each one sends and the version of the parser
// that wrote it.
//
// It is a leaf: it imports nothing of this module, so the server reads
// evidence without linking the collectors, the platform layer or their OS
// libraries. Collectors alias these types under their own names
// (firewall.Payload is FirewallPayload).
//
// A payload is read through Decode, which keeps old and new agents working
// with one server: see Decode for the compatibility rule, keyed by
// (collector, parser version).
package evidence

import (
	"encoding/json"
	"time"
)

// Status of one collection.
type Status string

const (
	StatusOK          Status = "ok"
	StatusError       Status = "error"
	StatusUnsupported Status = "unsupported"
)

// Source records one read that contributed to a result, so an auditor can see
// why a control passed or failed.
type Source struct {
	Kind     string `json:"kind"`                // "file", "command", "wmi", "api"
	Ref      string `json:"ref"`                 // path, argv joined by spaces, or query
	ExitCode *int   `json:"exit_code,omitempty"` // commands only
	Excerpt  string `json:"excerpt,omitempty"`   // bounded raw text that decided it
	Error    string `json:"error,omitempty"`
}

// Observation is one collector's result at one time, before the outbox gives
// it a sequence number.
type Observation struct {
	Collector     string          `json:"collector"`
	CollectedAt   time.Time       `json:"collected_at"`
	Status        Status          `json:"status"`
	Error         string          `json:"error,omitempty"`
	ParserVersion int             `json:"parser_version"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	Sources       []Source        `json:"sources,omitempty"`
	DurationMS    int64           `json:"duration_ms"`
}
