package patches

import "github.com/evident-dev/evident/collectors"

// collector reads the patch level. Its Collect is defined per OS.
type collector struct{}

// New returns the patches collector.
func New() collectors.Collector { return collector{} }

// Name implements collectors.Collector.
func (collector) Name() string { return Name }

// ParserVersion implements collectors.Versioned.
func (collector) ParserVersion() int { return 1 }
