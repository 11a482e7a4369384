package atomicfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/evident-dev/evident/internal/atomicfile"
)

// names lists dir, so a test can see that no temporary file is left.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte // written first with mode 0o644 when non-nil
		data     []byte
		perm     os.FileMode
	}{
		{name: "new file", data: []byte("device_id: d1\n"), perm: 0o600},
		{name: "new file, wider mode than umask", data: []byte("x"), perm: 0o666},
		{name: "empty", data: []byte{}, perm: 0o644},
		{name: "overwrites", existing: []byte("old and longer content"), data: []byte("new"), perm: 0o600},
		{name: "overwrites with empty", existing: []byte("old"), data: nil, perm: 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			if tt.existing != nil {
				if err := os.WriteFile(path, tt.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := atomicfile.WriteFile(path, tt.data, tt.perm); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tt.data) {
				t.Errorf("content = %q, want %q", got, tt.data)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && st.Mode().Perm() != tt.perm {
				t.Errorf("mode = %v, want %v", st.Mode().Perm(), tt.perm)
			}
			if got := names(t, dir); !slices.Equal(got, []string{"state.json"}) {
				t.Errorf("directory holds %q, want only state.json", got)
			}
		})
	}
}

func TestWriteFileFails(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		err := atomicfile.WriteFile(filepath.Join(dir, "nope", "state.json"), []byte("x"), 0o600)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want not-exist", err)
		}
		if got := names(t, dir); len(got) != 0 {
			t.Errorf("directory holds %q", got)
		}
	})
	t.Run("target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "state.json")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := atomicfile.WriteFile(target, []byte("x"), 0o600); err == nil {
			t.Fatal("WriteFile over a directory succeeded")
		}
		if st, err := os.Stat(target); err != nil || !st.IsDir() {
			t.Errorf("target changed: %v, %v", st, err)
		}
		// The failed rename must not leave its temporary file behind.
		if got := names(t, dir); !slices.Equal(got, []string{"state.json"}) {
			t.Errorf("directory holds %q, want only state.json", got)
		}
	})
}
