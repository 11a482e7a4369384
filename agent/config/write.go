package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/evident-dev/evident/internal/atomicfile"
)

// WriteFile sets settings in the config file at path, creating it (and its
// directory) when missing. Other settings, comments and layout are kept: a
// setting already present is replaced in place, one present only as a
// commented-out example ("# server: …") is written there, anything else is
// appended. The file is replaced atomically and readable only by its owner
// (root or SYSTEM and Administrators on Windows), since it may hold the
// enrollment secret.
func WriteFile(path string, set map[string]string) error {
	for name, v := range set {
		k, ok := Lookup(name)
		if !ok {
			return fmt.Errorf("config: unknown setting %q", name)
		}
		if k.check != nil && v != "" {
			if err := k.check(v); err != nil {
				return invalid("%s: %v", name, err)
			}
		}
	}
	old, err := readBounded(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if _, err := ParseFile(old); err != nil {
		return invalid("%s: %v; fix or remove it first", path, err)
	}
	b, err := edit(old, set)
	if err != nil {
		return err
	}
	if err := SecureDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("config directory: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	return secureFile(path)
}

// edit applies set to the file's text.
func edit(old []byte, set map[string]string) ([]byte, error) {
	lines := strings.SplitAfter(string(old), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		line, err := yamlLine(name, set[name])
		if err != nil {
			return nil, err
		}
		live := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `\s*:`)
		example := regexp.MustCompile(`^#\s*` + regexp.QuoteMeta(name) + `\s*:`)
		at := slices.IndexFunc(lines, func(l string) bool { return live.MatchString(l) })
		if at < 0 {
			at = slices.IndexFunc(lines, func(l string) bool { return example.MatchString(l) })
		}
		if at >= 0 {
			lines[at] = line
			continue
		}
		if n := len(lines); n > 0 && !strings.HasSuffix(lines[n-1], "\n") {
			lines[n-1] += "\n"
		}
		lines = append(lines, line)
	}
	out := []byte(strings.Join(lines, ""))
	got, err := ParseFile(out)
	if err != nil {
		return nil, fmt.Errorf("config: edited file does not parse: %w", err)
	}
	for name, v := range set {
		if got[name] != v {
			return nil, fmt.Errorf("config: %s did not round-trip", name)
		}
	}
	return out, nil
}

// yamlLine renders "name: value\n" with the value quoted as YAML needs.
func yamlLine(name, value string) (string, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(map[string]string{name: value}); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	s := buf.String()
	if strings.Count(s, "\n") != 1 {
		return "", fmt.Errorf("config: %s: value must be a single line", name)
	}
	return s, nil
}
