// Package service runs and manages evident-agent as a system service through
// kardianos/service: systemd on Linux, launchd on macOS, the service control
// manager on Windows. The service definitions are the same files the
// packages install, given by the caller (Definitions), so `evident-agent
// install` and a deb, pkg or MSI produce the same service.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	kservice "github.com/kardianos/service"
)

// DisplayName and Description are what service managers show.
const (
	DisplayName = "Evident Agent"
	Description = "Collects device-compliance evidence (disk encryption, patches, firewall, Secure Boot, TPM attestation) and streams it to evident-server."
)

// Status of the installed service.
type Status string

// Service states.
const (
	Running      Status = "running"
	Stopped      Status = "stopped"
	NotInstalled Status = "not installed"
	Failed       Status = "failed"
	Unknown      Status = "unknown"
)

// StopTimeout bounds how long a stop request waits for the agent to finish
// its cycle and close the outbox.
const StopTimeout = 20 * time.Second

// Config is the service definition for the agent binary at exe, running
// `exe run args...`, written from defs.
func Config(exe string, defs Definitions, args ...string) *kservice.Config {
	return &kservice.Config{
		Name:        Name,
		DisplayName: DisplayName,
		Description: Description,
		Executable:  exe,
		Arguments:   append([]string{"run"}, args...),
		Option:      options(defs),
	}
}

// program adapts a run function to kardianos' Start/Stop.
type program struct {
	run    func(context.Context, io.Writer) error
	log    io.Writer
	fail   func(error)
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

func (p *program) Start(kservice.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		err := p.run(ctx, p.log)
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			// The agent failed on its own (not asked to stop): exit
			// non-zero so the service manager's failure policy restarts
			// it (systemd Restart=on-failure, launchd KeepAlive,
			// Windows recovery actions).
			p.fail(err)
		}
	}()
	return nil
}

// Stop asks the agent to stop and waits for it. It never fails: a stop the
// administrator asked for must not look like a failure to the service
// manager (the Windows SCM would apply its recovery actions and restart the
// agent). A slow or failed shutdown is logged instead.
func (p *program) Stop(kservice.Service) error {
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		fmt.Fprintf(p.log, "level=WARN msg=%q timeout=%s\n", "agent did not finish stopping; exiting anyway (unacknowledged evidence stays in the outbox)", StopTimeout)
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil && !errors.Is(p.err, context.Canceled) {
		fmt.Fprintf(p.log, "level=WARN msg=%q err=%q\n", "agent stopped with an error", p.err)
	}
	return nil
}

// RunManaged runs fn under the service manager (the Windows SCM needs its
// dispatcher; systemd and launchd deliver SIGTERM). fn logs to the writer
// it is given: stderr, which the journal and launchd's log file capture, or
// the Windows Event Log. fail is called, and must exit the process
// non-zero, when fn fails on its own.
func RunManaged(exe string, stderr io.Writer, fn func(context.Context, io.Writer) error, fail func(error)) error {
	p := &program{run: fn, fail: fail, log: stderr}
	// Running writes no definition: the packaged files are not needed.
	s, err := kservice.New(p, Config(exe, Definitions{}))
	if err != nil {
		return err
	}
	if w := systemLog(s); w != nil {
		p.log = w
	}
	return s.Run()
}

// Managed reports whether this process was started by a service manager
// rather than from a terminal.
func Managed() bool { return startedByManager() || !kservice.Interactive() }

// Manager controls the installed service.
type Manager struct {
	svc kservice.Service
	exe string
}

// NewManager returns a manager for the agent at exe; a service it installs
// is written from defs and runs `exe run args...`.
func NewManager(exe string, defs Definitions, args ...string) (*Manager, error) {
	s, err := kservice.New(&program{}, Config(exe, defs, args...))
	if err != nil {
		return nil, fmt.Errorf("service manager: %w", err)
	}
	return &Manager{svc: s, exe: exe}, nil
}

// System names the service manager in use (systemd, launchd, windows-service…).
func (m *Manager) System() string { return m.svc.Platform() }

// Install installs the service definition. It reports installed=false, with
// no error, when the service already exists (a package installed it, or an
// earlier install did).
func (m *Manager) Install() (installed bool, err error) {
	if path, _ := definition(); path != "" {
		return false, nil
	}
	if st := m.Status(); st != NotInstalled && st != Unknown {
		return false, nil
	}
	if err := m.svc.Install(); err != nil {
		if alreadyExists(err) {
			return false, nil
		}
		return false, err
	}
	if err := afterInstall(m.svc.Platform()); err != nil {
		return true, err
	}
	return true, nil
}

// Enable makes an existing service start at boot.
func (m *Manager) Enable() error { return enable(m.svc.Platform()) }

// ErrPackaged means the service definition belongs to a package, which
// removes it.
var ErrPackaged = errors.New("the service was installed by a package: remove it with the package manager (apt remove evident-agent, dnf remove evident-agent, or the pkg's uninstall.sh)")

// Uninstall stops and removes the service definition.
func (m *Manager) Uninstall() error {
	if _, packaged := definition(); packaged {
		return ErrPackaged
	}
	if m.Status() == Running {
		if err := m.svc.Stop(); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
	}
	return m.svc.Uninstall()
}

// Start, Stop and Restart the service. Start and Restart first clear a
// failed state the service manager keeps (systemd's start limit), so fixing
// the settings and starting again works.
func (m *Manager) Start() error {
	resetFailed(m.svc.Platform())
	return m.svc.Start()
}
func (m *Manager) Stop() error { return m.svc.Stop() }
func (m *Manager) Restart() error {
	resetFailed(m.svc.Platform())
	return m.svc.Restart()
}

// Status asks the service manager.
func (m *Manager) Status() Status {
	st, err := m.svc.Status()
	switch {
	case errors.Is(err, kservice.ErrNotInstalled):
		if path, _ := definition(); path != "" {
			return Stopped
		}
		return NotInstalled
	case err != nil && strings.Contains(err.Error(), "failed state"):
		return Failed
	case err != nil:
		return Unknown
	case st == kservice.StatusRunning:
		return Running
	case st == kservice.StatusStopped:
		return Stopped
	}
	return Unknown
}

func alreadyExists(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "already exists")
}
