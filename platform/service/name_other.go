//go:build !linux && !darwin && !windows

package service

import kservice "github.com/kardianos/service"

// Name is the service's name.
const Name = "evident-agent"

func options(Definitions) kservice.KeyValue { return kservice.KeyValue{} }
func afterInstall(string) error             { return nil }
func enable(string) error                   { return nil }

func definition() (string, bool) { return "", false }
func resetFailed(string)         {}
func startedByManager() bool     { return false }
