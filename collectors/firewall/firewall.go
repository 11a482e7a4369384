package firewall

import "github.com/evident-dev/evident/collectors"

// New returns the firewall collector.
func New() collectors.Collector {
	return collectors.ByOS{Signal: Name, Version: ParserVersion, Linux: collectLinux, Darwin: collectDarwin, Windows: collectWindows}
}
