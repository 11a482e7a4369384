package all

import (
	"slices"
	"testing"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/proto/evidence"
)

// Every collector the agent ships has an evidence contract the server reads,
// at the version the collector sends, and the contract names no collector
// the agent does not ship.
func TestEvidenceContract(t *testing.T) {
	var names []string
	for _, c := range Default() {
		names = append(names, c.Name())
		v, ok := c.(collectors.Versioned)
		if !ok {
			t.Errorf("%s sends no parser version", c.Name())
			continue
		}
		if cur, known := evidence.CurrentVersion(c.Name()); !known || cur != v.ParserVersion() {
			t.Errorf("%s sends parser v%d; the evidence contract knows v%d (known: %v)", c.Name(), v.ParserVersion(), cur, known)
		}
	}
	slices.Sort(names)
	if got := evidence.Collectors(); !slices.Equal(got, names) {
		t.Errorf("evidence contracts %v; collectors shipped %v", got, names)
	}
}
