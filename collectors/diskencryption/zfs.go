package diskencryption

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/collectors"
)

// zfsGetArgv asks for the encryption properties of every dataset in one run
// (zfs-get(8): -H scripted mode, tab-separated, no header; -p exact values).
var zfsGetArgv = []string{"zfs", "get", "-H", "-p", "-o", "name,property,value", "encryption,keystatus,encryptionroot"}

// zfsProps are the encryption properties of one dataset (zfsprops(7)).
type zfsProps struct {
	Encryption     string // "off", "on", "aes-256-gcm", ...
	KeyStatus      string // "available", "unavailable", "-" or "none" when unencrypted
	EncryptionRoot string // dataset whose key this one uses, "-" when unencrypted
}

// parseZFSGet parses `zfs get -H -p -o name,property,value
// encryption,keystatus,encryptionroot`: one "name<TAB>property<TAB>value"
// line per dataset and property. Other properties are ignored. A line that
// is not three tab-separated fields, or has an empty name or value, is an
// error: the output is machine-readable, so garbage means a wrong command.
func parseZFSGet(b []byte) (map[string]zfsProps, error) {
	out := map[string]zfsProps{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] == "" || f[1] == "" || strings.TrimSpace(f[2]) == "" {
			return nil, fmt.Errorf("parse zfs get: line %d: want name, property and value separated by tabs", n)
		}
		p := out[f[0]]
		switch v := strings.TrimSpace(f[2]); f[1] {
		case "encryption":
			p.Encryption = v
		case "keystatus":
			p.KeyStatus = v
		case "encryptionroot":
			p.EncryptionRoot = v
		default:
			continue
		}
		out[f[0]] = p
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse zfs get: %w", err)
	}
	return out, nil
}

// applyZFS sets the encryption of a ZFS dataset volume from its properties.
// Encrypted only when encryption is on and its key is loaded.
func applyZFS(v *Volume, p zfsProps, ok bool, why string) {
	switch {
	case !ok:
		v.State = ""
		v.Detail = "ZFS encryption state unknown: " + why
	case p.Encryption == "" || p.Encryption == "off":
		v.State = "off"
		v.Detail = "ZFS native encryption is off for this dataset"
		if p.Encryption == "" {
			v.State, v.Detail = "", "ZFS encryption state unknown: zfs get did not report the encryption property"
		}
	default:
		v.Method = "ZFS " + p.Encryption
		switch p.KeyStatus {
		case "available":
			v.Encrypted, v.State = true, "encrypted"
			if p.EncryptionRoot != "" && p.EncryptionRoot != "-" && p.EncryptionRoot != v.Device {
				v.Detail = "key inherited from encryption root " + p.EncryptionRoot
			}
		case "unavailable":
			v.State = "locked"
			v.Detail = "ZFS encryption key is not loaded (keystatus unavailable)"
			if p.EncryptionRoot != "" && p.EncryptionRoot != "-" {
				v.Detail += "; encryption root " + p.EncryptionRoot
			}
		default:
			v.Detail = fmt.Sprintf("ZFS dataset is encrypted (%s) but its key status is %q", p.Encryption, p.KeyStatus)
		}
	}
}

// runZFSGet runs zfs get once for every dataset and records it as evidence,
// keeping in the excerpt only the lines of the datasets in want.
func (r *linuxReader) runZFSGet(ctx context.Context, want map[string]bool) (map[string]zfsProps, string) {
	ref := strings.Join(zfsGetArgv, " ")
	res, err := r.host.Run(ctx, zfsGetArgv...)
	if err != nil {
		r.sources = append(r.sources, collectors.Source{Kind: "command", Ref: ref, Error: err.Error()})
		return nil, "zfs command not available: " + err.Error()
	}
	if res.ExitCode != 0 {
		src := collectors.CommandSource(res, res.Stderr)
		src.Error = fmt.Sprintf("exit status %d", res.ExitCode)
		r.sources = append(r.sources, src)
		return nil, fmt.Sprintf("zfs get exited with status %d", res.ExitCode)
	}
	props, perr := parseZFSGet(res.Stdout)
	var ex bytes.Buffer
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if name, _, ok := strings.Cut(line, "\t"); ok && want[name] {
			ex.WriteString(line)
			ex.WriteByte('\n')
		}
	}
	src := collectors.CommandSource(res, ex.Bytes())
	if perr != nil {
		src.Excerpt = collectors.Excerpt(res.Stdout)
		src.Error = perr.Error()
		r.sources = append(r.sources, src)
		return nil, perr.Error()
	}
	r.sources = append(r.sources, src)
	return props, "dataset not listed by zfs get"
}

// zfsDataset returns the dataset of a zfs mount source, and false for a
// snapshot (pool/fs@snap, mounted under .zfs/snapshot): it is a read-only
// view of a dataset already reported.
func zfsDataset(source string) (string, bool) {
	if source == "" || strings.Contains(source, "@") {
		return "", false
	}
	return source, true
}

// fscryptStatusArgv lists the filesystems fscrypt knows of.
var fscryptStatusArgv = []string{"fscrypt", "status"}

// fscryptFS is one row of the `fscrypt status` table.
type fscryptFS struct {
	Mountpoint, Device, FSType, Encryption string
	Setup                                  bool // FSCRYPT column "Yes": fscrypt metadata present
}

// parseFscryptStatus parses the table `fscrypt status` prints after its
// summary lines:
//
//	MOUNTPOINT        DEVICE      FILESYSTEM  ENCRYPTION   FSCRYPT
//	/mnt/evt-fscrypt  /dev/loop0  ext4        supported    Yes
//
// Columns are aligned with at least two spaces (ENCRYPTION may be "not
// enabled" or "not supported"). A missing header is an error; rows that do
// not have five columns are skipped.
func parseFscryptStatus(b []byte) ([]fscryptFS, error) {
	var out []fscryptFS
	header := false
	for _, line := range strings.Split(string(b), "\n") {
		cols := splitColumns(line)
		if !header {
			header = len(cols) >= 5 && cols[0] == "MOUNTPOINT" && cols[4] == "FSCRYPT"
			continue
		}
		if len(cols) != 5 {
			continue
		}
		out = append(out, fscryptFS{Mountpoint: cols[0], Device: cols[1], FSType: cols[2], Encryption: cols[3], Setup: cols[4] == "Yes"})
	}
	if !header {
		return nil, fmt.Errorf("parse fscrypt status: no MOUNTPOINT ... FSCRYPT table")
	}
	return out, nil
}

// splitColumns splits a line on runs of two or more spaces or on tabs.
func splitColumns(line string) []string {
	var cols []string
	for _, c := range strings.Split(strings.ReplaceAll(strings.TrimRight(line, "\r"), "\t", "  "), "  ") {
		if c = strings.TrimSpace(c); c != "" {
			cols = append(cols, c)
		}
	}
	return cols
}

// fscryptFilesystems are the filesystems with native per-directory
// encryption (fscrypt): ext4, f2fs, ubifs (and ceph, not a local disk).
var fscryptFilesystems = map[string]bool{"ext4": true, "f2fs": true, "ubifs": true}

// fscryptDetail is added to a volume whose filesystem has fscrypt set up.
const fscryptDetail = "fscrypt enabled for some directories: not full-volume encryption"

// applyFscrypt runs `fscrypt status` when a volume could use fscrypt and
// notes, without marking anything encrypted, the volumes whose filesystem
// has encryption enabled and fscrypt set up. fscrypt not installed changes
// nothing and is not recorded.
func (r *linuxReader) applyFscrypt(ctx context.Context, vols []Volume) {
	need := false
	for _, v := range vols {
		need = need || (fscryptFilesystems[v.FSType] && len(v.Mountpoints) > 0 && !v.Encrypted)
	}
	if !need {
		return
	}
	res, err := r.host.Run(ctx, fscryptStatusArgv...)
	if err != nil {
		return
	}
	if res.ExitCode != 0 {
		r.sources = append(r.sources, collectors.CommandSource(res, res.Stderr))
		return
	}
	rows, perr := parseFscryptStatus(res.Stdout)
	src := collectors.CommandSource(res, res.Stdout)
	if perr != nil {
		src.Error = perr.Error()
	}
	r.sources = append(r.sources, src)
	enabled := map[string]bool{}
	for _, f := range rows {
		if f.Setup && f.Encryption == "supported" {
			enabled[f.Mountpoint] = true
		}
	}
	for i := range vols {
		v := &vols[i]
		if !fscryptFilesystems[v.FSType] {
			continue
		}
		for _, mp := range v.Mountpoints {
			if enabled[mp] {
				if v.Detail == "" {
					v.Detail = fscryptDetail
				} else {
					v.Detail += "; " + fscryptDetail
				}
				break
			}
		}
	}
}
