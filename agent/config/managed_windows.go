//go:build windows

package config

import (
	"errors"

	"golang.org/x/sys/windows/registry"
)

// registryPolicy reads HKLM\SOFTWARE\Policies\Evident\Agent.
type registryPolicy struct{}

// SystemManaged is the Group Policy registry key.
func SystemManaged() Managed { return registryPolicy{} }

func (registryPolicy) Origin() string { return `HKLM\` + ManagedPolicyKey }

func (registryPolicy) Read() (map[string]string, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, ManagedPolicyKey, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer k.Close()
	names, err := k.ReadValueNames(0)
	if err != nil {
		return nil, err
	}
	if len(names) > 64 {
		names = names[:64]
	}
	values := make(map[string]any, len(names))
	for _, n := range names {
		_, typ, err := k.GetValue(n, nil)
		if err != nil {
			return nil, err
		}
		switch typ {
		case registry.SZ, registry.EXPAND_SZ:
			s, _, err := k.GetStringValue(n)
			if err != nil {
				return nil, err
			}
			if len(s) > MaxFileBytes {
				s = s[:MaxFileBytes]
			}
			values[n] = s
		case registry.DWORD, registry.QWORD:
			u, _, err := k.GetIntegerValue(n)
			if err != nil {
				return nil, err
			}
			values[n] = u
		default:
			values[n] = unsupported(typ) // refused by FromRegistry, naming the value
		}
	}
	return FromRegistry(values)
}

// unsupported is a registry value type the agent does not read (binary,
// multi-string): FromRegistry refuses it by name.
type unsupported uint32
