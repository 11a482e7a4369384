package server

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseStoreSpec(t *testing.T) {
	dir := filepath.Join("var", "evident")
	tests := []struct {
		spec, kind, path string
		err              string // substring of the error; "" for success
	}{
		{spec: "", kind: "sqlite", path: filepath.Join(dir, "evident.db")},
		{spec: "sqlite:///srv/evident/fleet.db", kind: "sqlite", path: filepath.FromSlash("/srv/evident/fleet.db")},
		{spec: "postgres://evident@db.example:5432/evident?sslmode=verify-full", kind: "postgres"},
		{spec: "postgresql://evident@db.example/evident", kind: "postgres"},
		{spec: "sqlite://relative.db", err: "three slashes"},
		{spec: "sqlite://", err: "three slashes"},
		{spec: "sqlite:///x.db?mode=ro", err: "three slashes"},
		{spec: "mysql://root@db/evident", err: "want sqlite:///PATH or postgres://"},
		{spec: "/srv/evident/fleet.db", err: "want sqlite:///PATH or postgres://"},
		{spec: "postgres://evident:hunter2@db.example/evident\x7f", err: "not a URL"},
		{spec: "mysql://root:hunter2@db/evident", err: "xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			kind, path, err := ParseStoreSpec(tt.spec, dir)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseStoreSpec(%q) error = %v, want one containing %q", tt.spec, err, tt.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil || kind != tt.kind || path != tt.path {
				t.Errorf("ParseStoreSpec(%q) = %q, %q, %v; want %q, %q", tt.spec, kind, path, err, tt.kind, tt.path)
			}
		})
	}
}

// A PostgreSQL store that cannot be reached is an error naming the
// database without its password.
func TestOpenStoreHidesPassword(t *testing.T) {
	_, err := OpenStore("postgres://evident:hunter2@127.0.0.1:1/evident?connect_timeout=2", t.TempDir(), false)
	if err == nil {
		t.Fatal("opening an unreachable PostgreSQL succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error = %v: want the address and no password", err)
	}
	if errors.Unwrap(err) != nil && strings.Contains(errors.Unwrap(err).Error(), "hunter2") {
		t.Errorf("wrapped error shows the password")
	}
}
