package inventory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/evident-dev/evident/server/store"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		rows    []store.InventoryRow
		blank   int
		dups    []Duplicate
		cols    [3]string
		wantErr string // substring; "" for success
	}{
		{
			name: "canonical",
			in:   "serial,hostname,owner\nC02ABC,mac-1,ada@example.com\n,linux-2,\n",
			rows: []store.InventoryRow{{Line: 2, SerialNumber: "C02ABC", Hostname: "mac-1", Owner: "ada@example.com"}, {Line: 3, Hostname: "linux-2"}},
			cols: [3]string{"serial", "hostname", "owner"},
		},
		{
			name: "Jamf-style aliases, other columns ignored",
			in:   "Computer Name,Serial Number,Model,Assigned User\nmac-1,C02ABC,MacBookPro18,ada\n",
			rows: []store.InventoryRow{{Line: 2, SerialNumber: "C02ABC", Hostname: "mac-1", Owner: "ada"}},
			cols: [3]string{"Serial Number", "Computer Name", "Assigned User"},
		},
		{
			name: "snake and camel aliases, case-insensitive",
			in:   "SERIAL_NUMBER,Device_Name,EMAIL\nPF1,win-1,bill@example.com\n",
			rows: []store.InventoryRow{{Line: 2, SerialNumber: "PF1", Hostname: "win-1", Owner: "bill@example.com"}},
			cols: [3]string{"SERIAL_NUMBER", "Device_Name", "EMAIL"},
		},
		{
			name: "preferred alias wins: owner over user over email",
			in:   "host,email,user,owner\nh1,e,u,o\n",
			rows: []store.InventoryRow{{Line: 2, Hostname: "h1", Owner: "o"}},
			cols: [3]string{"", "host", "owner"},
		},
		{
			name: "BOM and CRLF",
			in:   "\uFEFFserialnumber,computer_name,user\r\nSN1,pc-1,ann\r\nSN2,pc-2,bob\r\n",
			rows: []store.InventoryRow{{Line: 2, SerialNumber: "SN1", Hostname: "pc-1", Owner: "ann"}, {Line: 3, SerialNumber: "SN2", Hostname: "pc-2", Owner: "bob"}},
			cols: [3]string{"serialnumber", "computer_name", "user"},
		},
		{
			name: "serial only, spaces trimmed, short rows",
			in:   "serial,owner\n  SN1  ,  ann \nSN2\n",
			rows: []store.InventoryRow{{Line: 2, SerialNumber: "SN1", Owner: "ann"}, {Line: 3, SerialNumber: "SN2"}},
			cols: [3]string{"serial", "", "owner"},
		},
		{
			name:  "empty rows skipped, line numbers kept",
			in:    "hostname\nh1\n\n,\n   \nh2\n",
			rows:  []store.InventoryRow{{Line: 2, Hostname: "h1"}, {Line: 6, Hostname: "h2"}},
			blank: 2,
			cols:  [3]string{"", "hostname", ""},
		},
		{
			name: "quoted fields spanning lines",
			in:   "hostname,owner\n\"h1\",\"Ada\nLovelace\"\nh2,bob\n",
			rows: []store.InventoryRow{{Line: 2, Hostname: "h1", Owner: "Ada\nLovelace"}, {Line: 4, Hostname: "h2", Owner: "bob"}},
			cols: [3]string{"", "hostname", "owner"},
		},
		{
			name: "duplicates reported, rows kept",
			in:   "serial,hostname\nsn1,a\nSN1 ,b\n,mac.corp\n,MAC\nsn1,c\n,other\n",
			rows: []store.InventoryRow{{Line: 2, SerialNumber: "sn1", Hostname: "a"}, {Line: 3, SerialNumber: "SN1", Hostname: "b"},
				{Line: 4, Hostname: "mac.corp"}, {Line: 5, Hostname: "MAC"}, {Line: 6, SerialNumber: "sn1", Hostname: "c"}, {Line: 7, Hostname: "other"}},
			dups: []Duplicate{{Field: "serial number", Value: "sn1", Lines: []int{2, 3, 6}}, {Field: "hostname", Value: "mac.corp", Lines: []int{4, 5}}},
			cols: [3]string{"serial", "hostname", ""},
		},
		{name: "header only", in: "serial,hostname,owner\n", rows: []store.InventoryRow{}, cols: [3]string{"serial", "hostname", "owner"}},
		{name: "empty file", in: "", wantErr: "empty file"},
		{name: "BOM only", in: "\uFEFF", wantErr: "empty file"},
		{name: "no usable column", in: "owner,model\nann,x\n", wantErr: `line 1: the header has no serial number column`},
		{name: "row without serial or hostname", in: "serial,hostname,owner\nSN1,h1,a\n,,bob\n", wantErr: "line 3: no serial number and no hostname"},
		{name: "bad quote", in: "serial,hostname\nSN1,h1\nSN2,\"h2\n", wantErr: "line 3, column"},
		{name: "bare quote", in: "serial\nSN1\nS\"N2\n", wantErr: "line 3, column 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(inv.Rows, tt.rows) {
				t.Errorf("rows\n got %+v\nwant %+v", inv.Rows, tt.rows)
			}
			if inv.Blank != tt.blank {
				t.Errorf("blank = %d, want %d", inv.Blank, tt.blank)
			}
			if tt.dups == nil {
				tt.dups = []Duplicate{}
			}
			if !reflect.DeepEqual(inv.Duplicates, tt.dups) {
				t.Errorf("duplicates = %+v, want %+v", inv.Duplicates, tt.dups)
			}
			if got := [3]string{inv.SerialColumn, inv.HostnameColumn, inv.OwnerColumn}; got != tt.cols {
				t.Errorf("columns = %q, want %q", got, tt.cols)
			}
			if len(inv.SHA256) != 64 {
				t.Errorf("SHA256 = %q", inv.SHA256)
			}
		})
	}
}

func TestParseSHA256IsOfTheFile(t *testing.T) {
	// The hash is of the bytes as exported, BOM included.
	inv, err := Parse(strings.NewReader("\uFEFFserial\nSN1\n"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("\uFEFFserial\nSN1\n"))
	if want := hex.EncodeToString(sum[:]); inv.SHA256 != want {
		t.Errorf("SHA256 = %s, want %s", inv.SHA256, want)
	}
}

func TestParseTooBig(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		var b bytes.Buffer
		b.WriteString("serial,notes\n")
		line := "S," + strings.Repeat("X", 1021) + "\n" // notes: a column the import ignores
		for b.Len() <= MaxBytes {
			b.WriteString(line)
		}
		if _, err := Parse(&b); !errors.Is(err, ErrTooBig) {
			t.Errorf("Parse of %d bytes = %v, want ErrTooBig", b.Len(), err)
		}
	})
	t.Run("rows", func(t *testing.T) {
		var b bytes.Buffer
		b.WriteString("serial\n")
		for i := range MaxRows + 1 {
			b.WriteString("S" + strconv.Itoa(i))
			b.WriteByte('\n')
		}
		_, err := Parse(&b)
		if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "line 200002") {
			t.Errorf("Parse of %d rows = %v, want ErrTooBig at line 200002", MaxRows+1, err)
		}
	})
	t.Run("at the limits", func(t *testing.T) {
		var b bytes.Buffer
		b.WriteString("serial\n")
		for i := range MaxRows {
			b.WriteString(strconv.Itoa(i))
			b.WriteByte('\n')
		}
		inv, err := Parse(&b)
		if err != nil || len(inv.Rows) != MaxRows {
			t.Errorf("Parse of %d rows: %v", MaxRows, err)
		}
	})
}

// TestParseBoundsFields: a serial number, hostname or owner longer than
// MaxField is refused, and an error quotes at most a bounded excerpt of
// the file (a 2 MB header is not echoed back).
func TestParseBoundsFields(t *testing.T) {
	long := strings.Repeat("A", 10<<20)
	for _, tt := range []struct {
		name, csv, want string
	}{
		{"overlong serial", "serial,hostname\n" + long[:MaxField+1] + ",h\n", "line 2: the serial number is 257 bytes long"},
		{"overlong owner", "serial,owner\nS1," + long + "\n", "the owner is 10485760 bytes long"},
		{"huge header", "nothing," + long[:2<<20] + "\nx,y\n", "no serial number column"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.csv))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v; want an error containing %q", err, tt.want)
			}
			if n := len(err.Error()); n > 2048 {
				t.Errorf("the error is %d bytes long: it echoes the file", n)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{" MacBook-7.corp.example.com ": "macbook-7", "PC1": "pc1", ".x": "", "": ""} {
		if got := NormalizeHostname(in); got != want {
			t.Errorf("NormalizeHostname(%q) = %q, want %q", in, got, want)
		}
	}
	if got := NormalizeSerial(" c02abc\t"); got != "C02ABC" {
		t.Errorf("NormalizeSerial = %q", got)
	}
}

// FuzzParse: Parse never panics, and what it accepts holds its promises:
// every row has a serial number or a hostname, trimmed, and lines increase.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"serial,hostname,owner\nC02ABC,mac-1,ada\n",
		"\uFEFFSerial Number,Computer Name\r\nSN1,pc-1\r\n",
		"hostname\n\"a\nb\",x\n,\n",
		"serial\nS\"N\n",
		"owner\nx\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		last := 1
		for _, r := range inv.Rows {
			if r.SerialNumber == "" && r.Hostname == "" {
				t.Fatalf("row without serial or hostname: %+v", r)
			}
			if strings.TrimSpace(r.SerialNumber) != r.SerialNumber || strings.TrimSpace(r.Hostname) != r.Hostname {
				t.Fatalf("untrimmed row: %+v", r)
			}
			if r.Line <= last {
				t.Fatalf("line %d after %d", r.Line, last)
			}
			last = r.Line
		}
		if len(inv.Rows) > MaxRows {
			t.Fatalf("%d rows", len(inv.Rows))
		}
	})
}
