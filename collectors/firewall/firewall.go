package firewall

import "github.com/evident-dev/evident/collectors"

// New returns the firewall collector.
func New() collectors.Collector {
	return collectors.ByOS{Signal: Name, Version: 2, Linux: collectLinux, Darwin: collectDarwin, Windows: collectWindows}
}
