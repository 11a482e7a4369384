//go:build windows

package config

import (
	"errors"
	"fmt"
	"io"
	"slices"

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
	// The known values are read by name; other names are listed (a bounded
	// number) only so Load can warn about them.
	values := map[string]any{}
	for _, n := range ManagedKeys() {
		v, err := readValue(k, n)
		if errors.Is(err, registry.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		values[n] = v
	}
	names, err := k.ReadValueNames(256)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	for _, n := range names {
		if _, ok := values[n]; !ok && !slices.Contains(ManagedKeys(), n) {
			values[n] = unsupported(0)
		}
	}
	return FromRegistry(values)
}

// readValue reads one value as FromRegistry expects it.
func readValue(k registry.Key, name string) (any, error) {
	_, typ, err := k.GetValue(name, nil)
	if err != nil {
		return nil, err
	}
	switch typ {
	case registry.SZ, registry.EXPAND_SZ:
		s, _, err := k.GetStringValue(name)
		if len(s) > MaxFileBytes {
			s = s[:MaxFileBytes]
		}
		return s, err
	case registry.DWORD, registry.QWORD:
		u, _, err := k.GetIntegerValue(name)
		return u, err
	}
	return unsupported(typ), nil // refused by FromRegistry, naming the value
}

// unsupported is a registry value type the agent does not read (binary,
// multi-string): FromRegistry refuses it by name.
type unsupported uint32
