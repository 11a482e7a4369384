// Package inventory parses the device inventory an auditor reconciles the
// fleet against: a CSV exported from an MDM, HR system or identity provider
// with a header row and, per device, a serial number, a hostname and an
// owner. Columns are found by name (case-insensitive, with common aliases);
// other columns are ignored. Input is bounded (MaxBytes, MaxRows) and every
// error names its line.
package inventory

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/evident-dev/evident/server/store"
)

// Bounds on an inventory file.
const (
	MaxBytes = 16 << 20
	MaxRows  = 200_000
	// MaxField bounds a serial number, hostname or owner: they are shown
	// in reports beside the devices' own.
	MaxField = 256
	// maxShown bounds what an error quotes of the file.
	maxShown = 200
)

// ErrTooBig is wrapped when the file exceeds MaxBytes or MaxRows.
var ErrTooBig = errors.New("inventory too big")

// Column aliases, in order of preference, compared after lowercasing and
// removing spaces, underscores and hyphens ("Serial Number",
// "serial_number" and "SerialNumber" are all "serialnumber").
var (
	serialAliases   = []string{"serialnumber", "serial", "serialno"}
	hostnameAliases = []string{"hostname", "host", "devicename", "computername"}
	ownerAliases    = []string{"owner", "assigneduser", "user", "email"}
)

// Inventory is a parsed file.
type Inventory struct {
	Rows []store.InventoryRow
	// Columns names the header columns used, as spelled in the file ("" when
	// absent).
	SerialColumn, HostnameColumn, OwnerColumn string
	// Blank counts data rows with every field empty (skipped).
	Blank int
	// Duplicates lists serial numbers, and hostnames of rows without a
	// serial number, that appear on more than one row. The rows are kept:
	// a duplicate is for the operator to fix at the source, not a reason
	// to refuse the file.
	Duplicates []Duplicate
	// SHA256 is the hex SHA-256 of the file as read.
	SHA256 string
}

// Duplicate is a key found on several rows.
type Duplicate struct {
	Field string // "serial number" or "hostname"
	Value string // as on the first row
	Lines []int
}

func (d Duplicate) String() string {
	ls := make([]string, len(d.Lines))
	for i, l := range d.Lines {
		ls[i] = fmt.Sprint(l)
	}
	return fmt.Sprintf("%s %q on lines %s", d.Field, d.Value, strings.Join(ls, ", "))
}

// NormalizeSerial is how serial numbers compare: trimmed, case-insensitive.
func NormalizeSerial(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

// NormalizeHostname is how hostnames compare: trimmed, case-insensitive,
// the short name before the first dot ("MacBook-7.corp.example.com" is
// "macbook-7").
func NormalizeHostname(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if i := strings.IndexByte(h, '.'); i >= 0 {
		h = h[:i]
	}
	return h
}

func normalizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '_', '-', '\t':
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(s)))
}

// Parse reads and parses an inventory CSV: at most MaxBytes and MaxRows
// data rows; a UTF-8 byte order mark and CRLF line ends are accepted.
func Parse(r io.Reader) (*Inventory, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("%w: more than %d MiB", ErrTooBig, MaxBytes>>20)
	}
	sum := sha256.Sum256(b)
	inv := &Inventory{Rows: []store.InventoryRow{}, Duplicates: []Duplicate{}, SHA256: hex.EncodeToString(sum[:])}
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))

	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1 // short rows mean empty trailing fields
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty file: want a header row naming serial number, hostname and owner columns")
	}
	if err != nil {
		return nil, csvError(err)
	}
	hline, _ := cr.FieldPos(0)
	col := func(aliases []string) (int, string) {
		for _, a := range aliases {
			for i, h := range header {
				if normalizeHeader(h) == a {
					return i, strings.TrimSpace(h)
				}
			}
		}
		return -1, ""
	}
	si, sname := col(serialAliases)
	hi, hname := col(hostnameAliases)
	oi, oname := col(ownerAliases)
	inv.SerialColumn, inv.HostnameColumn, inv.OwnerColumn = sname, hname, oname
	if si < 0 && hi < 0 {
		return nil, fmt.Errorf("line %d: the header has no serial number column (serial, serial_number, serialnumber) and no hostname column "+
			"(hostname, host, device_name, computer_name); found %s", hline, quoteAll(header))
	}

	field := func(rec []string, i int) string {
		if i < 0 || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if !slices.ContainsFunc(rec, func(f string) bool { return strings.TrimSpace(f) != "" }) {
			inv.Blank++
			continue
		}
		row := store.InventoryRow{Line: line, SerialNumber: field(rec, si), Hostname: field(rec, hi), Owner: field(rec, oi)}
		for _, f := range []struct{ name, v string }{{"serial number", row.SerialNumber}, {"hostname", row.Hostname}, {"owner", row.Owner}} {
			if len(f.v) > MaxField {
				return nil, fmt.Errorf("line %d: the %s is %d bytes long, more than %d: %s", line, f.name, len(f.v), MaxField, shown(f.v))
			}
		}
		if row.SerialNumber == "" && row.Hostname == "" {
			return nil, fmt.Errorf("line %d: no serial number and no hostname: every device needs one of them", line)
		}
		if len(inv.Rows) == MaxRows {
			return nil, fmt.Errorf("%w: line %d: more than %d devices", ErrTooBig, line, MaxRows)
		}
		inv.Rows = append(inv.Rows, row)
	}
	inv.Duplicates = duplicates(inv.Rows)
	return inv, nil
}

// duplicates finds serial numbers, and hostnames of rows without one, on
// more than one row, in order of first appearance.
func duplicates(rows []store.InventoryRow) []Duplicate {
	out := []Duplicate{}
	idx := map[string]int{}      // key: index in out
	first := map[string]int{}    // key: line of its first row
	shown := map[string]string{} // key: value as on its first row
	add := func(field, key, value string, line int) {
		k := field + "\x00" + key
		if i, ok := idx[k]; ok {
			out[i].Lines = append(out[i].Lines, line)
			return
		}
		if l, ok := first[k]; ok {
			idx[k] = len(out)
			out = append(out, Duplicate{Field: field, Value: shown[k], Lines: []int{l, line}})
			return
		}
		first[k], shown[k] = line, value
	}
	for _, r := range rows {
		if r.SerialNumber != "" {
			add("serial number", NormalizeSerial(r.SerialNumber), r.SerialNumber, r.Line)
		} else {
			add("hostname", NormalizeHostname(r.Hostname), r.Hostname, r.Line)
		}
	}
	return out
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d, column %d: %w", pe.Line, pe.Column, pe.Err)
	}
	return err
}

func quoteAll(ss []string) string {
	if len(ss) == 0 {
		return "no columns"
	}
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = shown(s)
	}
	out := strings.Join(q, ", ")
	if len(out) > 4*maxShown {
		out = out[:4*maxShown] + "… (" + fmt.Sprint(len(ss)) + " columns)"
	}
	return out
}

// shown quotes at most maxShown bytes of a value from the file for an
// error message.
func shown(s string) string {
	if len(s) > maxShown {
		return fmt.Sprintf("%q… (%d bytes)", strings.ToValidUTF8(s[:maxShown], ""), len(s))
	}
	return fmt.Sprintf("%q", s)
}
