package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	gattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"

	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// Reasons a TPM identity is refused at enrollment. Errors returned by
// CheckTPMIdentity and NewActivation wrap exactly one of these or ErrMalformed.
var (
	ErrEKUntrusted  = errors.New("endorsement key not trusted")
	ErrAKAttributes = errors.New("attestation key attributes unacceptable")
	ErrAKCreation   = errors.New("attestation key creation evidence does not verify")
)

// EK trust anchors recorded in EnrolledTPM.EKTrust.
const (
	EKTrustCertificate = "manufacturer-certificate"
	EKTrustAllowlist   = "allowlist"
)

// Size bounds of a TPMIdentity's fields: real EK public keys are under 600
// bytes, EK certificates under 2 KiB and AK structures under 1 KiB.
const (
	maxEKPubSize  = 4 << 10
	maxEKCertSize = 16 << 10
	maxAKPartSize = 4 << 10
)

// oidSAN is the subjectAltName extension (RFC 5280 4.2.1.6). TCG EK
// certificates carry it critical (their subject is empty) holding a
// directoryName with the TPM manufacturer, model and version, which
// crypto/x509 does not handle and so lists as an unhandled critical
// extension, failing Verify.
var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// EnrolledTPM is what the server stores for a device's TPM.
type EnrolledTPM struct {
	// EKHash is the SHA-256 of the EK public key, PKIX DER as crypto/x509
	// marshals it.
	EKHash [32]byte
	// EKTrust is EKTrustCertificate or EKTrustAllowlist.
	EKTrust string
	// The EK certificate's subject, issuer and serial (decimal); empty when
	// the EK was trusted by the allowlist.
	EKCertSubject, EKCertIssuer, EKCertSerial string
	// AKPublic is the AK's TPMT_PUBLIC exactly as enrolled.
	AKPublic []byte
}

// CheckTPMIdentity validates a device's TPM identity at enrollment. The EK
// is trusted if its certificate (parsed with go-attestation, which accepts
// the NV index's header and trailing padding) is for the same key and chains
// to pol.Roots, or else if its hash is in pol.AllowedEKs; a certificate for
// another key is refused outright. The AK must be a restricted, TPM-resident
// (fixedTPM, fixedParent, sensitiveDataOrigin) signing key, RSA of at least
// 2048 bits or ECC on P-256 or larger, and its creation data, attestation and
// signature must be consistent (go-attestation's CheckAKParameters). Proof
// that the AK lives in the same TPM as the EK comes after, from NewActivation.
func CheckTPMIdentity(id *evidentv1.TPMIdentity, pol *EKPolicy) (*EnrolledTPM, error) {
	if id == nil || id.GetAk() == nil {
		return nil, fmt.Errorf("%w: TPM identity without AK", ErrMalformed)
	}
	if pol == nil {
		pol = &EKPolicy{}
	}
	ekPub, canon, err := parseEKPublic(id.GetEkPub())
	if err != nil {
		return nil, err
	}
	out := &EnrolledTPM{EKHash: sha256.Sum256(canon)}
	if err := checkEK(id.GetEkCert(), ekPub, out, pol); err != nil {
		return nil, err
	}
	ak := id.GetAk()
	for _, p := range []struct {
		name string
		b    []byte
	}{{"public", ak.GetPublic()}, {"create_data", ak.GetCreateData()}, {"create_attestation", ak.GetCreateAttestation()}, {"create_signature", ak.GetCreateSignature()}} {
		if len(p.b) > maxAKPartSize {
			return nil, fmt.Errorf("%w: AK %s is %d bytes (max %d)", ErrMalformed, p.name, len(p.b), maxAKPartSize)
		}
	}
	if _, _, err := parseAK(ak.GetPublic()); err != nil {
		return nil, err
	}
	if err := checkAKCreation(ekPub, ak); err != nil {
		return nil, err
	}
	out.AKPublic = bytes.Clone(ak.GetPublic())
	return out, nil
}

// parseEKPublic parses the EK public key (PKIX DER, RSA or ECDSA) and returns
// it with its canonical encoding.
func parseEKPublic(der []byte) (crypto.PublicKey, []byte, error) {
	if len(der) == 0 || len(der) > maxEKPubSize {
		return nil, nil, fmt.Errorf("%w: EK public key is %d bytes (want 1-%d)", ErrMalformed, len(der), maxEKPubSize)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: EK public key: %v", ErrMalformed, err)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return nil, nil, fmt.Errorf("%w: EK public key: unsupported type %T", ErrMalformed, pub)
	}
	canon, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: EK public key: %v", ErrMalformed, err)
	}
	return pub, canon, nil
}

// checkEK decides whether the EK is trusted and fills out's EK fields.
func checkEK(certDER []byte, ekPub crypto.PublicKey, out *EnrolledTPM, pol *EKPolicy) error {
	var chainErr error
	if len(certDER) > 0 {
		if len(certDER) > maxEKCertSize {
			return fmt.Errorf("%w: EK certificate is %d bytes (max %d)", ErrMalformed, len(certDER), maxEKCertSize)
		}
		cert, err := gattest.ParseEKCertificate(certDER)
		if err != nil {
			return fmt.Errorf("%w: EK certificate: %v", ErrMalformed, err)
		}
		k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !k.Equal(ekPub) {
			return fmt.Errorf("%w: the EK certificate (subject %q, serial %s) is for another key than the EK", ErrEKUntrusted, cert.Subject, cert.SerialNumber)
		}
		if chainErr = verifyEKCert(cert, pol); chainErr == nil {
			out.EKTrust = EKTrustCertificate
			out.EKCertSubject = cert.Subject.String()
			out.EKCertIssuer = cert.Issuer.String()
			out.EKCertSerial = cert.SerialNumber.String()
			return nil
		}
	}
	if pol.AllowedEKs[out.EKHash] {
		out.EKTrust = EKTrustAllowlist
		return nil
	}
	if chainErr != nil {
		return fmt.Errorf("%w: EK certificate does not chain to a trusted manufacturer root (%v) and EK %x is not allowlisted", ErrEKUntrusted, chainErr, out.EKHash)
	}
	return fmt.Errorf("%w: no EK certificate and EK %x is not allowlisted", ErrEKUntrusted, out.EKHash)
}

// verifyEKCert verifies cert's chain to pol.Roots. The critical SAN of TCG
// EK certificates is accepted (crypto/x509 cannot interpret its
// directoryName), and any extended key usage is (EK certificates carry
// tcg-kp-EKCertificate, which crypto/x509 does not know).
func verifyEKCert(cert *x509.Certificate, pol *EKPolicy) error {
	if pol.Roots == nil {
		return errors.New("no manufacturer roots configured")
	}
	c := *cert
	c.UnhandledCriticalExtensions = nil
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSAN) {
			c.UnhandledCriticalExtensions = append(c.UnhandledCriticalExtensions, oid)
		}
	}
	_, err := c.Verify(x509.VerifyOptions{
		Roots:         pol.Roots,
		Intermediates: pol.Intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// parseAK decodes an AK's TPMT_PUBLIC, checks it is an acceptable attestation
// key and returns it with its public key.
func parseAK(public []byte) (*tpm2.TPMTPublic, crypto.PublicKey, error) {
	if len(public) == 0 || len(public) > maxAKPartSize {
		return nil, nil, fmt.Errorf("%w: AK public is %d bytes (want 1-%d)", ErrMalformed, len(public), maxAKPartSize)
	}
	pub, err := unmarshalExact[tpm2.TPMTPublic]("AK public (TPMT_PUBLIC)", public)
	if err != nil {
		return nil, nil, err
	}
	a := pub.ObjectAttributes
	for _, req := range []struct {
		name string
		set  bool
	}{
		{"fixedTPM", a.FixedTPM},
		{"fixedParent", a.FixedParent},
		{"sensitiveDataOrigin", a.SensitiveDataOrigin},
		{"restricted", a.Restricted},
		{"sign", a.SignEncrypt},
	} {
		if !req.set {
			return nil, nil, fmt.Errorf("%w: AK lacks %s", ErrAKAttributes, req.name)
		}
	}
	if a.Decrypt {
		return nil, nil, fmt.Errorf("%w: AK has decrypt (an AK must only sign)", ErrAKAttributes)
	}
	var key crypto.PublicKey
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: AK RSA parameters: %v", ErrMalformed, err)
		}
		if parms.KeyBits < 2048 {
			return nil, nil, fmt.Errorf("%w: AK is RSA-%d, want at least 2048 bits", ErrAKAttributes, parms.KeyBits)
		}
		u, err := pub.Unique.RSA()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: AK RSA modulus: %v", ErrMalformed, err)
		}
		k, err := tpm2.RSAPub(parms, u)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: AK RSA key: %v", ErrMalformed, err)
		}
		if k.N.BitLen() < 2048 || k.E < 3 || k.E%2 == 0 {
			return nil, nil, fmt.Errorf("%w: AK RSA key: %d-bit modulus, exponent %d", ErrAKAttributes, k.N.BitLen(), k.E)
		}
		key = k
	case tpm2.TPMAlgECC:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: AK ECC parameters: %v", ErrMalformed, err)
		}
		switch parms.CurveID {
		case tpm2.TPMECCNistP256, tpm2.TPMECCNistP384, tpm2.TPMECCNistP521:
		default:
			return nil, nil, fmt.Errorf("%w: AK curve 0x%04x, want NIST P-256, P-384 or P-521", ErrAKAttributes, uint16(parms.CurveID))
		}
		u, err := pub.Unique.ECC()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: AK ECC point: %v", ErrMalformed, err)
		}
		k, err := tpm2.ECDSAPub(parms, u)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: AK ECC key: %v", ErrMalformed, err)
		}
		if !onCurve(k) {
			return nil, nil, fmt.Errorf("%w: AK ECC point is not on its curve", ErrMalformed)
		}
		key = k
	default:
		return nil, nil, fmt.Errorf("%w: AK type 0x%04x, want RSA or ECC", ErrAKAttributes, uint16(pub.Type))
	}
	return pub, key, nil
}

// onCurve reports whether k's point is a valid point of its curve.
func onCurve(k *ecdsa.PublicKey) bool {
	_, err := k.ECDH() // checks the point is on the curve
	return err == nil
}

// activationParams builds go-attestation's view of the identity.
func activationParams(ekPub crypto.PublicKey, ak *evidentv1.AKParameters) *gattest.ActivationParameters {
	return &gattest.ActivationParameters{
		EK: ekPub,
		AK: gattest.AttestationParameters{
			Public:            ak.GetPublic(),
			CreateData:        ak.GetCreateData(),
			CreateAttestation: ak.GetCreateAttestation(),
			CreateSignature:   ak.GetCreateSignature(),
		},
	}
}

// checkAKCreation runs go-attestation's CheckAKParameters, which decodes
// with the legacy go-tpm decoder: a panic there is malformed input.
func checkAKCreation(ekPub crypto.PublicKey, ak *evidentv1.AKParameters) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: AK creation data: %v", ErrAKCreation, r)
		}
	}()
	if err := activationParams(ekPub, ak).CheckAKParameters(); err != nil {
		return fmt.Errorf("%w: %v", ErrAKCreation, err)
	}
	return nil
}

// NewActivation makes a TPM2_MakeCredential challenge for the identity's EK
// and AK: only the TPM holding both can recover the returned secret with
// TPM2_ActivateCredential. The challenge's credential and secret fields are
// set; the caller sets challenge_id and expires_at and compares the device's
// answer with the secret in constant time (crypto/subtle).
func NewActivation(id *evidentv1.TPMIdentity) (secret []byte, ch *evidentv1.ActivationChallenge, err error) {
	if id == nil || id.GetAk() == nil {
		return nil, nil, fmt.Errorf("%w: TPM identity without AK", ErrMalformed)
	}
	ekPub, _, err := parseEKPublic(id.GetEkPub())
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := parseAK(id.GetAk().GetPublic()); err != nil {
		return nil, nil, err
	}
	if err := checkAKCreation(ekPub, id.GetAk()); err != nil {
		return nil, nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			secret, ch, err = nil, nil, fmt.Errorf("%w: make credential: %v", ErrMalformed, r)
		}
	}()
	secret, ec, err := activationParams(ekPub, id.GetAk()).Generate()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: make credential: %v", ErrAKCreation, err)
	}
	return secret, &evidentv1.ActivationChallenge{Credential: ec.Credential, Secret: ec.Secret}, nil
}
