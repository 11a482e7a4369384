package server

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/evident-dev/evident/internal/atomicfile"
	"github.com/evident-dev/evident/internal/version"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// A backup is a gzipped tar of MANIFEST.json, the pki directory (the CA and
// the evidence signing key: without them restored bundles would not verify
// against the fingerprint auditors hold) and, for the SQLite store,
// evident.db as an online snapshot. It holds the CA key: keep it like one.
const (
	manifestName   = "MANIFEST.json"
	backupDBName   = "evident.db"
	maxBackupEntry = 64 << 30
)

// BackupManifest describes a backup.
type BackupManifest struct {
	CreatedAt     time.Time `json:"created_at"`
	ServerVersion string    `json:"server_version"`
	// Store is "sqlite" (the database is in the backup) or "postgres" (it
	// is not: back it up with pg_dump).
	Store         string            `json:"store"`
	SchemaVersion int               `json:"schema_version,omitempty"`
	SHA256        map[string]string `json:"sha256"`
}

// Backup writes a backup of the data directory's server to out, which must
// not exist (it is created 0600), while the server runs.
func Backup(ctx context.Context, storeSpec, dataDir, out string, now time.Time) (BackupManifest, error) {
	kind, dbPath, err := ParseStoreSpec(storeSpec, dataDir)
	if err != nil {
		return BackupManifest{}, err
	}
	m := BackupManifest{CreatedAt: now.UTC(), ServerVersion: version.Version, Store: kind, SHA256: map[string]string{}}
	files := map[string]string{} // archive name -> file
	pki := filepath.Join(dataDir, "pki")
	entries, err := os.ReadDir(pki)
	if err != nil {
		return m, fmt.Errorf("the data directory's pki: %w", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			files["pki/"+e.Name()] = filepath.Join(pki, e.Name())
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".evident-backup-")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(tmp)
	if kind == "sqlite" {
		snap := filepath.Join(tmp, backupDBName)
		if err := sqlite.Backup(ctx, dbPath, snap); err != nil {
			return m, err
		}
		if m.SchemaVersion, err = sqlite.CheckFile(ctx, snap); err != nil {
			return m, fmt.Errorf("the snapshot does not check: %w", err)
		}
		files[backupDBName] = snap
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return m, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(out)
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sum, err := addFile(tw, n, files[n])
		if err != nil {
			return m, err
		}
		m.SHA256[n] = sum
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(mb)), ModTime: m.CreatedAt}); err != nil {
		return m, err
	}
	if _, err := tw.Write(mb); err != nil {
		return m, err
	}
	if err := errors.Join(tw.Close(), gz.Close(), f.Sync(), f.Close()); err != nil {
		return m, err
	}
	ok = true
	return m, nil
}

func addFile(tw *tar.Writer, name, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tw, h), f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Restore unpacks a backup into dataDir: its pki directory and, for a
// SQLite backup, the database. Everything is checked (the manifest's
// checksums, SQLite's integrity check) before anything is written. It
// refuses to replace an existing database or CA unless force; the server
// must be stopped then. The pki directory it replaces is kept beside it
// as pki.replaced-NANOS.
func Restore(ctx context.Context, storeSpec, archive, dataDir string, force bool) (BackupManifest, error) {
	var m BackupManifest
	kind, dbFile, err := ParseStoreSpec(storeSpec, dataDir)
	if err != nil {
		return m, err
	}
	tmp, err := os.MkdirTemp(dataDir, ".evident-restore-")
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return m, err
		}
		tmp, err = os.MkdirTemp(dataDir, ".evident-restore-")
	}
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(tmp)
	got, err := unpack(archive, tmp)
	if err != nil {
		return m, fmt.Errorf("%s: %w", archive, err)
	}
	mb, ok := got[manifestName]
	if !ok {
		return m, fmt.Errorf("%s: no %s: not an evident-server backup", archive, manifestName)
	}
	b, err := os.ReadFile(mb.path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %s: %w", archive, manifestName, err)
	}
	for name, want := range m.SHA256 {
		e, ok := got[name]
		if !ok {
			return m, fmt.Errorf("%s: %s is listed in the manifest but missing", archive, name)
		}
		if e.sum != want {
			return m, fmt.Errorf("%s: %s does not match its checksum: the backup is damaged", archive, name)
		}
	}
	for name := range got {
		if _, ok := m.SHA256[name]; !ok && name != manifestName {
			return m, fmt.Errorf("%s: %s is not in the manifest", archive, name)
		}
	}
	if _, ok := got["pki/ca.crt"]; !ok {
		return m, fmt.Errorf("%s: no CA certificate (pki/ca.crt)", archive)
	}
	if m.Store == "sqlite" && kind != "sqlite" {
		return m, fmt.Errorf("%s holds a SQLite database; the store given is %s: restore it with the SQLite store (or move the data with your own tools)", archive, kind)
	}
	if m.Store == "sqlite" {
		e, ok := got[backupDBName]
		if !ok {
			return m, fmt.Errorf("%s: a SQLite backup without %s", archive, backupDBName)
		}
		if _, err := sqlite.CheckFile(ctx, e.path); err != nil {
			return m, fmt.Errorf("%s: the database does not check: %w", archive, err)
		}
		if _, err := os.Stat(dbFile); err == nil && !force {
			return m, fmt.Errorf("%s already exists: stop the server and restore with --force to replace it", dbFile)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "pki", "ca.crt")); err == nil && !force {
		cur, _ := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
		bak, _ := os.ReadFile(got["pki/ca.crt"].path)
		if string(cur) != string(bak) {
			return m, fmt.Errorf("%s holds another CA: restoring would change the CA agents trust; restore with --force to replace it", filepath.Join(dataDir, "pki"))
		}
	}
	// The pki directory is replaced whole: files of the old one that the
	// backup does not have (a rollover's) must not mix with it.
	newPKI := filepath.Join(tmp, "pki")
	if err := os.Mkdir(newPKI, 0o700); err != nil {
		return m, err
	}
	for name, e := range got {
		if strings.HasPrefix(name, "pki/") {
			if err := os.Rename(e.path, filepath.Join(newPKI, path.Base(name))); err != nil {
				return m, err
			}
		}
	}
	if err := atomicfile.SyncDir(newPKI); err != nil {
		return m, err
	}
	pkiDir := filepath.Join(dataDir, "pki")
	if _, err := os.Stat(pkiDir); err == nil {
		old := filepath.Join(dataDir, fmt.Sprintf("pki.replaced-%d", time.Now().UnixNano()))
		// Kept, not deleted: it may hold a CA key that exists nowhere else.
		if err := os.Rename(pkiDir, old); err != nil {
			return m, err
		}
	}
	if err := os.Rename(newPKI, pkiDir); err != nil {
		return m, err
	}
	if m.Store == "sqlite" {
		// The replaced database's WAL must not be replayed onto the
		// restored one.
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Remove(dbFile + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return m, err
			}
		}
		if err := os.Rename(got[backupDBName].path, dbFile); err != nil {
			return m, err
		}
	}
	return m, nil
}

type unpacked struct{ path, sum string }

// unpack extracts a backup's regular files into dir, by archive name,
// refusing names that are not the backup's own (absolute, "..", nested
// deeper than pki/).
func unpack(archive, dir string) (map[string]unpacked, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("not a gzipped backup: %w", err)
	}
	tr := tar.NewReader(gz)
	got := map[string]unpacked{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return nil, fmt.Errorf("damaged backup: %w", err)
		}
		name := h.Name
		base := path.Base(name)
		valid := h.Typeflag == tar.TypeReg && h.Size <= maxBackupEntry && base != "." && base != ".." &&
			(name == manifestName || name == backupDBName || name == "pki/"+base)
		if !valid {
			return nil, fmt.Errorf("unexpected entry %q", name)
		}
		if _, dup := got[name]; dup {
			return nil, fmt.Errorf("entry %q twice", name)
		}
		out := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		w, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		h2 := sha256.New()
		_, err = io.Copy(io.MultiWriter(w, h2), io.LimitReader(tr, maxBackupEntry))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("damaged backup: %s: %w", name, err)
		}
		got[name] = unpacked{path: out, sum: hex.EncodeToString(h2.Sum(nil))}
	}
}
