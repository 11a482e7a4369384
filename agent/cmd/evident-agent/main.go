// Command evident-agent collects device-compliance evidence (disk
// encryption, patch level, firewall, Secure Boot, TPM, OS facts), keeps it
// durably in a local outbox and streams it to evident-server over mTLS.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
