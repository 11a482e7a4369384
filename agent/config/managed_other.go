//go:build !darwin && !windows

package config

// SystemManaged is nil: Linux has no MDM-managed settings store; fleet tools
// (Ansible, Puppet, Chef) write the config file instead.
func SystemManaged() Managed { return nil }
