package platform_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
)

// writeTree creates files (host-absolute slash paths) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLiveReadFile(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	writeTree(t, root, map[string]string{
		"/etc/os-release": "ID=debian\n",
		"/ten":            "0123456789",
	})
	writeTree(t, parent, map[string]string{"/outside": "not in the root"})
	big := bytes.Repeat([]byte{'x'}, platform.DefaultFileLimit+1)
	if err := os.WriteFile(filepath.Join(root, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	h := &platform.Live{Root: root}

	tests := []struct {
		name     string
		path     string
		limit    int64
		want     string
		wantLen  int // checked instead of want when non-zero
		wantErr  bool
		notExist bool
	}{
		{name: "reads", path: "/etc/os-release", want: "ID=debian\n"},
		{name: "limit equal to size", path: "/ten", limit: 10, want: "0123456789"},
		{name: "limit above size", path: "/ten", limit: 11, want: "0123456789"},
		{name: "larger than limit", path: "/ten", limit: 4, want: "0123", wantErr: true},
		{name: "default bound", path: "/big", wantLen: platform.DefaultFileLimit, wantErr: true},
		{name: "missing", path: "/etc/shadow", wantErr: true, notExist: true},
		{name: "missing directory", path: "/nope/x", wantErr: true, notExist: true},
		{name: "relative path refused", path: "etc/os-release", wantErr: true},
		{name: "dot relative path refused", path: "./etc/os-release", wantErr: true},
		{name: "directory", path: "/etc", wantErr: true},
		// "/.." is "/" on a real host: a path must not climb out of Root.
		{name: "dot-dot stays in root", path: "/../outside", wantErr: true, notExist: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.ReadFile(tt.path, tt.limit)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ReadFile(%q, %d) err = %v, want error %v", tt.path, tt.limit, err, tt.wantErr)
			}
			if platform.IsNotExist(err) != tt.notExist {
				t.Errorf("IsNotExist(%v) = %v, want %v", err, !tt.notExist, tt.notExist)
			}
			if tt.wantLen != 0 {
				if len(got) != tt.wantLen {
					t.Errorf("read %d bytes, want the bound %d", len(got), tt.wantLen)
				}
				return
			}
			if string(got) != tt.want {
				t.Errorf("ReadFile(%q, %d) = %q, want %q", tt.path, tt.limit, got, tt.want)
			}
		})
	}
}

func TestLiveGlob(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"/sys/class/tpm/tpm0/tpm_version_major": "2",
		"/sys/class/tpm/tpm1/tpm_version_major": "2",
		"/sys/class/tpm/other":                  "",
	})
	tests := []struct {
		name    string
		host    *platform.Live
		pattern string
		want    []string
		wantErr bool
	}{
		{name: "host-absolute paths", host: &platform.Live{Root: root}, pattern: "/sys/class/tpm/tpm*",
			want: []string{"/sys/class/tpm/tpm0", "/sys/class/tpm/tpm1"}},
		{name: "nested", host: &platform.Live{Root: root}, pattern: "/sys/class/tpm/*/tpm_version_major",
			want: []string{"/sys/class/tpm/tpm0/tpm_version_major", "/sys/class/tpm/tpm1/tpm_version_major"}},
		{name: "no match", host: &platform.Live{Root: root}, pattern: "/sys/class/tpm/nothing*"},
		{name: "bad pattern", host: &platform.Live{Root: root}, pattern: "/sys/[", wantErr: true},
		{name: "no root returns paths as is", host: &platform.Live{}, pattern: filepath.Join(root, "sys", "class", "tpm", "tpm*"),
			want: []string{filepath.Join(root, "sys", "class", "tpm", "tpm0"), filepath.Join(root, "sys", "class", "tpm", "tpm1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.host.Glob(tt.pattern)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Glob(%q) err = %v, want error %v", tt.pattern, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Glob(%q) = %q, want %q", tt.pattern, got, tt.want)
			}
			// What Glob returns, ReadFile or ReadDir accept.
			for _, p := range got {
				_, ferr := tt.host.ReadFile(p, 0)
				_, derr := tt.host.ReadDir(p)
				if ferr != nil && derr != nil {
					t.Errorf("Glob result %q is unreadable: %v; %v", p, ferr, derr)
				}
			}
		})
	}
}

func TestLiveReadDir(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"/etc/apt/sources.list.d/a.list": "", "/etc/apt/sources.list.d/b.list": ""})
	h := &platform.Live{Root: root}
	ents, err := h.ReadDir("/etc/apt/sources.list.d")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"a.list", "b.list"}; !slices.Equal(names, want) {
		t.Errorf("ReadDir = %q, want %q", names, want)
	}
	if _, err := h.ReadDir("/etc/missing"); !platform.IsNotExist(err) {
		t.Errorf("ReadDir of a missing directory: err = %v, want not-exist", err)
	}
}

func TestLiveRunRefused(t *testing.T) {
	root := t.TempDir()
	// A file at the would-be path of a command that is not on the list, and
	// a directory where an allow-listed command should be.
	writeTree(t, root, map[string]string{"/usr/bin/sh": "", "/usr/bin/lsblk/x": "", "/bin/lsblk/x": ""})
	h := &platform.Live{Root: root}
	tests := []struct {
		name    string
		argv    []string
		wantErr error // nil: any error
	}{
		{name: "empty argv", argv: nil},
		{name: "not on the allow-list", argv: []string{"sh", "-c", "id"}, wantErr: platform.ErrNotAllowed},
		{name: "absolute path is not a name", argv: []string{"/usr/bin/uname"}, wantErr: platform.ErrNotAllowed},
		{name: "allow-listed but absent", argv: []string{"uname", "-r"}, wantErr: platform.ErrCommandNotFound},
		{name: "a directory is not a command", argv: []string{"lsblk"}, wantErr: platform.ErrCommandNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := h.Run(context.Background(), tt.argv...)
			if err == nil {
				t.Fatalf("Run(%q) = %+v, want an error", tt.argv, res)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Run(%q) err = %v, want %v", tt.argv, err, tt.wantErr)
			}
			if res.Path != "" {
				t.Errorf("Run(%q) ran %q", tt.argv, res.Path)
			}
		})
	}
}

func TestAllowedPathsAreAbsolute(t *testing.T) {
	for _, name := range []string{"lsblk", "uname", "fdesetup", "socketfilterfw", "apk"} {
		ps := platform.AllowedPaths(name)
		if len(ps) == 0 {
			t.Errorf("AllowedPaths(%q) is empty", name)
		}
		for _, p := range ps {
			if !strings.HasPrefix(p, "/") || filepath.ToSlash(filepath.Clean(p)) != p {
				t.Errorf("AllowedPaths(%q) holds %q: want a clean absolute path", name, p)
			}
		}
	}
	if ps := platform.AllowedPaths("sh"); ps != nil {
		t.Errorf("AllowedPaths(sh) = %q: a shell must never be allow-listed", ps)
	}
}
