package tpm

import "github.com/evident-dev/evident/collectors"

// collector reads the TPM presence. Its Collect is defined per OS.
type collector struct{}

// New returns the TPM collector.
func New() collectors.Collector { return collector{} }

// Name implements collectors.Collector.
func (collector) Name() string { return Name }

// ParserVersion implements collectors.Versioned.
func (collector) ParserVersion() int { return 1 }
