package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	"howett.net/plist"
)

// ManagedPrefsDomain is the macOS managed preferences domain a configuration
// profile sets (PayloadType com.evident.agent, or a
// com.apple.ManagedClient.preferences payload for that domain).
const ManagedPrefsDomain = "com.evident.agent"

// ManagedPolicyKey is the Windows registry key Group Policy and Intune
// (ADMX ingestion or a registry CSP) write, under HKEY_LOCAL_MACHINE.
const ManagedPolicyKey = `SOFTWARE\Policies\Evident\Agent`

// PlistFile is a managed-preferences property list: the file macOS writes
// when a configuration profile sets the domain at system scope.
type PlistFile string

// Read parses the property list; a missing file means no profile.
func (p PlistFile) Read() (map[string]string, error) {
	b, err := readBounded(string(p))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParsePlist(b)
}

// Origin names the file.
func (p PlistFile) Origin() string { return string(p) }

// ParsePlist reads managed settings from a property list (XML or binary).
// Strings, integers, reals and booleans become strings; other types are
// refused, naming the key.
func ParsePlist(b []byte) (map[string]string, error) {
	var raw map[string]any
	if _, err := plist.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("property list: %w", err)
	}
	return scalars(raw)
}

// scalars converts the values of the known managed keys, refusing a
// non-scalar one by name; an unknown key is kept with an empty value, so
// Load warns about it whatever its type.
func scalars(raw map[string]any) (map[string]string, error) {
	known := ManagedKeys()
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		s, err := scalar(v)
		if err != nil {
			if slices.Contains(known, k) {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			s = ""
		}
		out[k] = s
	}
	return out, nil
}

// FromRegistry converts registry values as golang.org/x/sys/windows/registry
// returns them (string for REG_SZ and REG_EXPAND_SZ, uint64 for REG_DWORD
// and REG_QWORD) into managed settings.
func FromRegistry(values map[string]any) (map[string]string, error) {
	return scalars(values)
}

func scalar(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		return strconv.FormatBool(t), nil
	case uint64:
		return strconv.FormatUint(t, 10), nil
	case int64:
		return strconv.FormatInt(t, 10), nil
	case uint32:
		return strconv.FormatUint(uint64(t), 10), nil
	case int:
		return strconv.Itoa(t), nil
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), nil
	default:
		return "", fmt.Errorf("unsupported value type %T (want a string or a number)", v)
	}
}
