package diskencryption

import "github.com/evident-dev/evident/collectors"

// New returns the disk encryption collector.
func New() collectors.Collector {
	return collectors.ByOS{Signal: Name, Version: ParserVersion, Linux: collectLinux, Darwin: collectDarwin, Windows: collectWindows}
}
