package diskencryption

import (
	"context"
	"fmt"
	"strings"

	"github.com/evident-dev/evident/collectors"
)

// nullCipher reports a dm-crypt cipher that does not encrypt: cryptsetup
// accepts "cipher_null" (LUKS2 can be formatted with cipher_null-ecb) and
// "null" for plain dm-crypt.
func nullCipher(c string) bool {
	c = strings.ToLower(strings.TrimSpace(c))
	return strings.HasPrefix(c, "cipher_null") || c == "null" || strings.HasPrefix(c, "null-") || strings.HasPrefix(c, "ecb(cipher_null)")
}

// parseCryptStatus reads `cryptsetup status NAME`: the "type:" and
// "cipher:" lines of an active device. ok is false when the output has no
// cipher line (inactive device, or not cryptsetup's output).
func parseCryptStatus(b []byte) (typ, cipher string, ok bool) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, found := strings.Cut(strings.TrimSpace(line), ":")
		if !found {
			continue
		}
		switch strings.TrimSpace(k) {
		case "type":
			typ = strings.TrimSpace(v)
		case "cipher":
			cipher, ok = strings.TrimSpace(v), true
		}
	}
	return typ, cipher, ok
}

// luksHeader is what `cryptsetup luksDump` says of an on-disk header.
type luksHeader struct {
	// Ciphers of the active data segments (not the backup-previous /
	// backup-final ones kept for a reencryption); "linear" for a
	// plaintext segment.
	Ciphers []string
	// Reencrypt is the reencryption mode in progress ("encrypt",
	// "decrypt", "reencrypt"), "" when none.
	Reencrypt string
}

// parseLuksDump reads `cryptsetup luksDump DEVICE` (LUKS2 layout; LUKS1
// prints "Cipher name:").
func parseLuksDump(b []byte) (luksHeader, error) {
	var h luksHeader
	section, segType, segCipher, backup := "", "", "", false
	inSeg := false
	flush := func() {
		if inSeg && !backup {
			c := segCipher
			if segType == "linear" {
				c = "linear"
			}
			h.Ciphers = append(h.Ciphers, c)
		}
		inSeg, segType, segCipher, backup = false, "", "", false
	}
	sawHeader, online := false, false
	for _, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "LUKS header information"):
			sawHeader = true
			continue
		case strings.HasPrefix(line, "Requirements:") && strings.Contains(line, "online-reencrypt"):
			online = true
		case strings.HasPrefix(line, "Cipher name:"): // LUKS1
			h.Ciphers = append(h.Ciphers, strings.TrimSpace(strings.TrimPrefix(line, "Cipher name:")))
		case line != "" && line[0] != ' ' && line[0] != '\t' && strings.HasSuffix(t, ":"):
			flush()
			section = strings.TrimSuffix(t, ":")
			continue
		}
		if section == "Data segments" {
			if n, typ, ok := strings.Cut(t, ": "); ok && len(line) > 2 && line[0] == ' ' && line[2] != ' ' && isDigits(n) {
				flush()
				inSeg, segType = true, strings.TrimSpace(typ)
				continue
			}
			if k, v, ok := strings.Cut(t, ":"); ok && inSeg {
				switch strings.TrimSpace(k) {
				case "cipher":
					segCipher = strings.TrimSpace(v)
				case "flags":
					backup = strings.Contains(v, "backup-")
				}
			}
		}
		if section == "Keyslots" && online {
			if k, v, ok := strings.Cut(t, ":"); ok && strings.TrimSpace(k) == "Mode" {
				h.Reencrypt = strings.TrimSpace(v)
			}
		}
	}
	flush()
	if !sawHeader {
		return h, fmt.Errorf("cryptsetup luksDump: not a LUKS header dump")
	}
	if online && h.Reencrypt == "" {
		h.Reencrypt = "reencrypt"
	}
	return h, nil
}

func isDigits(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// judgeHeader says whether a LUKS header's data is ciphertext, with the
// state and a reason for the auditor when it is not (or not only).
func judgeHeader(h luksHeader) (encrypted bool, state, detail string) {
	for _, c := range h.Ciphers {
		if c == "linear" {
			return false, reencryptState(h), "LUKS2 data segment is plaintext (linear)" + reencryptNote(h)
		}
		if nullCipher(c) {
			return false, "off", "LUKS data cipher " + c + ": no encryption"
		}
	}
	if h.Reencrypt != "" {
		return h.Reencrypt == "reencrypt", reencryptState(h), "LUKS2 " + h.Reencrypt + " in progress" + reencryptNote(h)
	}
	return len(h.Ciphers) > 0, "", ""
}

func reencryptState(h luksHeader) string {
	switch h.Reencrypt {
	case "encrypt":
		return "encrypting"
	case "decrypt":
		return "decrypting"
	case "reencrypt":
		return "encrypted"
	}
	return "off"
}

func reencryptNote(h luksHeader) string {
	if h.Reencrypt == "" {
		return ""
	}
	return " (online " + h.Reencrypt + " in progress; cryptsetup luksDump does not report the progress)"
}

// cryptStatus asks cryptsetup for the cipher of the active dm-crypt device
// named name. ok is false when it cannot be read.
func (r *linuxReader) cryptStatus(ctx context.Context, name string) (cipher string, ok bool) {
	argv := []string{"cryptsetup", "status", name}
	res, err := r.host.Run(ctx, argv...)
	if err != nil {
		r.sources = append(r.sources, collectors.Source{Kind: "command", Ref: strings.Join(argv, " "), Error: err.Error()})
		return "", false
	}
	_, c, ok := parseCryptStatus(res.Stdout)
	src := collectors.CommandSource(res, res.Stdout)
	if !ok {
		src.Error = "no cipher line"
	}
	r.sources = append(r.sources, src)
	return c, ok
}

// luksDump reads the header of an unopened LUKS container.
func (r *linuxReader) luksDump(ctx context.Context, dev string) (luksHeader, bool) {
	argv := []string{"cryptsetup", "luksDump", dev}
	res, err := r.host.Run(ctx, argv...)
	if err != nil {
		r.sources = append(r.sources, collectors.Source{Kind: "command", Ref: strings.Join(argv, " "), Error: err.Error()})
		return luksHeader{}, false
	}
	h, perr := parseLuksDump(res.Stdout)
	src := collectors.CommandSource(res, res.Stdout)
	if perr != nil || res.ExitCode != 0 {
		src.Error = fmt.Sprintf("exit %d: %v", res.ExitCode, perr)
		r.sources = append(r.sources, src)
		return h, false
	}
	r.sources = append(r.sources, src)
	return h, true
}
