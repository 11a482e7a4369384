// Package enrolltoken is the enrollment token format shared by the server,
// which prints it, and the agent, which parses it: the enrollment secret and
// the SHA-256 pin of the server CA in one string, so one value pasted into an
// MDM profile gives both (after kubeadm's discovery-token-ca-cert-hash).
package enrolltoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"strings"
)

// tokenPrefix versions the enrollment token format.
const tokenPrefix = "evt1"

// Token is evt1.<secret>.<ca-sha256-hex>.
type Token struct {
	Secret string
	CAPin  string // hex SHA-256 of the CA certificate DER
}

func (t Token) String() string { return tokenPrefix + "." + t.Secret + "." + t.CAPin }

// NewSecret returns a fresh random enrollment secret (160 bits, base32).
func NewSecret() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// HashSecret is how secrets are stored at rest.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte("evident-enroll-secret\x00" + secret))
	return h[:]
}

// Parse parses an enrollment token. It never echoes the secret in an
// error.
func Parse(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 || parts[0] != tokenPrefix {
		return Token{}, errors.New("enrollment token: want evt1.<secret>.<ca-sha256>, as printed by `evident-server secret create`")
	}
	if len(parts[1]) < 16 {
		return Token{}, errors.New("enrollment token: secret part is too short")
	}
	if b, err := hex.DecodeString(parts[2]); err != nil || len(b) != sha256.Size {
		return Token{}, errors.New("enrollment token: CA pin must be 64 hex characters (SHA-256)")
	}
	return Token{Secret: parts[1], CAPin: strings.ToLower(parts[2])}, nil
}
