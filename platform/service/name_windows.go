//go:build windows

package service

import (
	"time"

	kservice "github.com/kardianos/service"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// Name is the Windows service name, as in the MSI's ServiceInstall.
const Name = "evident-agent"

func options(Definitions) kservice.KeyValue {
	return kservice.KeyValue{
		"StartType":              "automatic",
		"OnFailure":              "restart",
		"OnFailureDelayDuration": "10s",
		"OnFailureResetPeriod":   86400,
	}
}

// recovery is the back-off the service control manager applies when the
// agent fails: 10 s, then 1 min, then every 5 min; the count resets after a
// day without failures. A clean stop is not a failure, so a manual stop stays
// stopped.
var recovery = []mgr.RecoveryAction{
	{Type: mgr.ServiceRestart, Delay: 10 * time.Second},
	{Type: mgr.ServiceRestart, Delay: time.Minute},
	{Type: mgr.ServiceRestart, Delay: 5 * time.Minute},
}

// SetRecovery sets the recovery actions with back-off on the installed
// service. The agent calls it when it starts as a service too, so a service
// an MSI installed gets the same policy.
func SetRecovery() error {
	// Register the Event Log source too (kardianos' Install does; an MSI
	// does not), so Event Viewer shows the agent's messages cleanly. It
	// fails harmlessly when the source already exists.
	_ = eventlog.InstallAsEventCreate(Name, eventlog.Error|eventlog.Warning|eventlog.Info)
	m, err := mgr.Connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	s, err := m.OpenService(Name)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.SetRecoveryActions(recovery, 86400); err != nil {
		return err
	}
	// Count an exit with a non-zero code as a failure, not only a crash.
	return s.SetRecoveryActionsOnNonCrashFailures(true)
}

func afterInstall(string) error { return SetRecovery() }

// definition: a Windows service has no file; the service manager's status
// says whether it exists.
func definition() (string, bool) { return "", false }

func resetFailed(string) {}

// startedByManager: kardianos asks the SCM (svc.IsWindowsService).
func startedByManager() bool { return false }
func enable(string) error    { return nil }
