package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
)

func parseECKey(b []byte) (any, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not PEM")
	}
	return x509.ParseECPrivateKey(blk.Bytes)
}
