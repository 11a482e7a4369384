package secureboot

import "github.com/evident-dev/evident/collectors"

// New returns the Secure Boot collector. Parser v2 reads shim's
// MokSBStateRT and refuses efivar values other than 0 and 1.
func New() collectors.Collector {
	return collectors.ByOS{Signal: Name, Version: ParserVersion, Linux: collectLinux, Darwin: collectDarwin, Windows: collectWindows}
}
