// Package quotedata defines what a TPM quote's qualifying data (extraData)
// binds, so the agent that quotes and the server that verifies compute it
// the same way: SHA-256(nonce || SHA-256(report)), where report is the
// serialized Report the quote covers (README: TPM attestation). The nonce makes the quote
// fresh; the report hash ties the evidence batch to the TPM that quoted.
package quotedata

import "crypto/sha256"

// Size is the length of the qualifying data in bytes.
const Size = sha256.Size

// Compute returns SHA-256(nonce || SHA-256(report)).
func Compute(nonce, report []byte) []byte {
	rh := sha256.Sum256(report)
	h := sha256.New()
	h.Write(nonce)
	h.Write(rh[:])
	return h.Sum(nil)
}
