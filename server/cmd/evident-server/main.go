// Command evident-server enrolls devices, ingests their evidence over
// gRPC/mTLS, scores it against the SOC 2 device control pack and prints
// posture reports.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
