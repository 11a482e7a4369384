package diskencryption

import (
	"context"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseLuksDump(t *testing.T) {
	for _, tc := range []struct {
		file      string
		encrypted bool
		state     string
		detail    string
	}{
		// REAL: cryptsetup 2.6.1 headers on files (see testdata/README.md).
		{"luks2-aes.txt", true, "", ""},
		{"luks2-reencrypt-init.txt", true, "encrypted", "LUKS2 reencrypt in progress"},
		{"luks2-encrypt-init.txt", false, "encrypting", "plaintext (linear) (online encrypt in progress"},
		// DERIVED from luks2-aes.txt: the data segment cipher set to
		// cipher_null-ecb (cryptsetup cannot format one without
		// device-mapper here).
		{"luks2-cipher-null-derived.txt", false, "off", "LUKS data cipher cipher_null-ecb: no encryption"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			h, err := parseLuksDump(platformtest.ReadFixture(t, "luksdump", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			enc, state, detail := judgeHeader(h)
			if enc != tc.encrypted || state != tc.state || !strings.Contains(detail, tc.detail) {
				t.Errorf("= %v %q %q (header %+v), want %v %q %q", enc, state, detail, h, tc.encrypted, tc.state, tc.detail)
			}
		})
	}
	if _, err := parseLuksDump([]byte("Device /dev/loop0 is not a valid LUKS device.\n")); err == nil {
		t.Error("error text accepted")
	}
}

func TestParseCryptStatus(t *testing.T) {
	for file, want := range map[string]string{"status-aes.txt": "aes-xts-plain64", "status-cipher-null.txt": "cipher_null-ecb", "status-plain-null.txt": "null"} {
		_, c, ok := parseCryptStatus(platformtest.ReadFixture(t, "cryptsetup", file))
		if !ok || c != want {
			t.Errorf("%s: %q %v", file, c, ok)
		}
	}
	if _, _, ok := parseCryptStatus([]byte("/dev/mapper/x is inactive.\n")); ok {
		t.Error("inactive device has a cipher")
	}
}

// TestNullCipherIsNotEncryption: a dm-crypt layer (uuid CRYPT-LUKS2-…,
// CRYPT-PLAIN-…) whose cipher is null was counted as encrypted by the
// dm uuid alone. luks-plus-data is the CONSTRUCTED tree (LUKS2 root on
// sda2, dm name cryptroot); the status outputs are constructed in
// cryptsetup's format.
func TestNullCipherIsNotEncryption(t *testing.T) {
	for _, tc := range []struct {
		status    string
		encrypted bool
		detail    string
	}{
		{"status-aes.txt", true, ""},
		{"status-cipher-null.txt", false, "uses cipher cipher_null-ecb: no encryption"},
		{"status-plain-null.txt", false, "uses cipher null: no encryption"},
		{"", true, ""}, // cryptsetup not installed: the dm uuid decides, as before
	} {
		t.Run(tc.status, func(t *testing.T) {
			h := tree(t, "luks-plus-data", "")
			if tc.status != "" {
				h.Commands["cryptsetup status cryptroot"] = platform.Result{Stdout: platformtest.ReadFixture(t, "cryptsetup", tc.status)}
			}
			res, err := collectLinux(context.Background(), h)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range res.Payload.(Payload).Volumes {
				if v.Role != "system" {
					continue
				}
				if v.Encrypted != tc.encrypted || !strings.Contains(v.Detail, tc.detail) {
					t.Errorf("root = %+v, want encrypted %v, detail %q", v, tc.encrypted, tc.detail)
				}
				return
			}
			t.Fatal("no system volume")
		})
	}
}

// TestUnopenedLuksHeader: an unopened crypto_LUKS container was counted
// as encrypted by its fstype alone. loop-luks is the REAL recording of a
// loop device over a LUKS2 header file.
func TestUnopenedLuksHeader(t *testing.T) {
	for _, tc := range []struct {
		dump      string
		encrypted bool
		state     string
	}{
		{"luks2-aes.txt", true, ""},
		{"luks2-encrypt-init.txt", false, "encrypting"},
		{"luks2-cipher-null-derived.txt", false, "off"},
	} {
		t.Run(tc.dump, func(t *testing.T) {
			h := tree(t, "loop-luks", "loop-luks/lsblk.json")
			h.Commands["cryptsetup luksDump /dev/loop0"] = platform.Result{Stdout: platformtest.ReadFixture(t, "luksdump", tc.dump)}
			res, err := collectLinux(context.Background(), h)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range res.Payload.(Payload).Volumes {
				if v.Device == "/dev/loop0" {
					if v.Encrypted != tc.encrypted || v.State != tc.state {
						t.Errorf("loop0 = %+v, want encrypted %v state %q", v, tc.encrypted, tc.state)
					}
					return
				}
			}
			t.Fatal("no /dev/loop0 volume")
		})
	}
}
