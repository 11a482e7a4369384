//go:build cgo

package tpm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/evident-dev/evident/agent/tpm"
	"github.com/evident-dev/evident/internal/quotedata"
	"github.com/evident-dev/evident/internal/tpmtest"
)

// ekCertIndex is the NV index of the RSA EK certificate (TCG EK Credential
// Profile).
const ekCertIndex = 0x01C00002

// simTPM is the simulator as a transport whose Close leaves it running, so
// several Devices can be opened on it in turn.
type simTPM struct{ transport.TPM }

func (simTPM) Close() error { return nil }

// TestSimulator runs on go-tpm-tools' simulator (one per process, so all in
// one test): Identity reports the EK certificate written to NV, Activate
// answers a challenge, and Attest's PCRs replay a recorded log without
// Secure Boot that was extended into them.
func TestSimulator(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	raw := transport.FromReadWriter(sim)

	log := tpmtest.RecordedEventLog(t, tpmtest.NoSecureBootLog)
	tpmtest.ExtendEventLog(t, raw, log)
	logPath := filepath.Join(t.TempDir(), "binary_bios_measurements")
	if err := os.WriteFile(logPath, log, 0o600); err != nil {
		t.Fatal(err)
	}
	akPath := filepath.Join(t.TempDir(), "ak")

	// The simulator has no EK certificate: Identity reports the EK alone.
	d, err := tpm.OpenTransport(simTPM{raw}, logPath)
	if err != nil {
		t.Fatal(err)
	}
	ak, _, err := d.LoadOrCreateAK(akPath)
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.Identity(ak)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.EkCert) != 0 {
		t.Fatalf("EK certificate of %d bytes before one was written", len(id.EkCert))
	}
	ekPub, err := x509.ParsePKIXPublicKey(id.EkPub)
	if err != nil {
		t.Fatal(err)
	}
	ak.Close()
	d.Close()

	certDER := writeEKCert(t, raw, ekPub)

	d, err = tpm.OpenTransport(simTPM{raw}, logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ak, created, err := d.LoadOrCreateAK(akPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	if created {
		t.Error("AK created again")
	}

	t.Run("identity", func(t *testing.T) {
		got, err := d.Identity(ak)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.EkCert, certDER) {
			t.Fatal("EK certificate is not the one written to NV")
		}
		if _, err := attest.ParseEKCertificate(got.EkCert); err != nil {
			t.Errorf("ParseEKCertificate: %v", err)
		}
		if !bytes.Equal(got.EkPub, id.EkPub) {
			t.Error("EK public key changed")
		}
	})

	t.Run("activate", func(t *testing.T) {
		secret, ch := challenge(t, ekPub, id.Ak)
		got, err := d.Activate(ak, ch)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, secret) {
			t.Errorf("secret %x, want %x", got, secret)
		}
	})

	t.Run("attest", func(t *testing.T) {
		nonce, report := randBytes(t, 32), []byte("report")
		att, err := d.Attest(ak, nonce, report)
		if err != nil {
			t.Fatal(err)
		}
		checkQuotes(t, akPublic(t, d, ak), att, tpmtest.Banks(t, raw), quotedata.Compute(nonce, report))
		if !bytes.Equal(att.EventLog, log) || att.EventLogError != "" {
			t.Fatalf("event log: %d bytes, error %q; want the file", len(att.EventLog), att.EventLogError)
		}
		el, err := attest.ParseEventLog(att.EventLog)
		if err != nil {
			t.Fatal(err)
		}
		replayed := 0
		for _, alg := range el.Algs {
			ps := pcrs(t, att, tpm2.TPMAlgID(alg))
			if len(ps) == 0 {
				continue
			}
			replayed++
			events, err := el.Verify(ps)
			if err != nil {
				t.Fatalf("%v: event log does not replay to the quoted PCRs: %v", alg, err)
			}
			if alg != attest.HashSHA256 {
				continue // go-attestation parses SHA-1 and SHA-256 events only
			}
			sb, err := attest.ParseSecurebootState(events)
			if err != nil {
				t.Fatal(err)
			}
			if sb.Enabled {
				t.Errorf("%v: Secure Boot enabled, want disabled (recorded log)", alg)
			}
		}
		if replayed < 2 {
			t.Errorf("log replayed in %d banks, want at least SHA-1 and SHA-256", replayed)
		}
	})
}

// writeEKCert signs a test EK certificate for ekPub, shaped like a real one
// (empty subject, critical subjectAltName with the TPM's directoryName), and
// writes it to the RSA EK certificate NV index with owner auth.
func writeEKCert(t *testing.T, raw transport.TPM, ekPub any) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "evident test TPM CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}

	// subjectAltName: directoryName with tcg-at-tpmManufacturer, Model and
	// Version (TCG EK Credential Profile 3.2.9).
	dn, err := asn1.Marshal(pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:54455354"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: "evident-sim"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 3}, Value: "id:00010002"},
	}}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dn}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(2),
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		KeyUsage:        x509.KeyUsageKeyEncipherment,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, ekPub, caKey)
	if err != nil {
		t.Fatal(err)
	}

	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if _, err := (tpm2.NVDefineSpace{
		AuthHandle: owner,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: tpm2.TPMHandle(ekCertIndex),
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				OwnerWrite: true, OwnerRead: true, AuthRead: true, PPRead: true, NoDA: true,
			},
			DataSize: uint16(len(der)),
		}),
	}).Execute(raw); err != nil {
		t.Fatalf("NV_DefineSpace: %v", err)
	}
	pub, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(ekCertIndex)}.Execute(raw)
	if err != nil {
		t.Fatalf("NV_ReadPublic: %v", err)
	}
	for off := 0; off < len(der); off += 1024 {
		chunk := der[off:min(off+1024, len(der))]
		if _, err := (tpm2.NVWrite{
			AuthHandle: owner,
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(ekCertIndex), Name: pub.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: chunk},
			Offset:     uint16(off),
		}).Execute(raw); err != nil {
			t.Fatalf("NV_Write at %d: %v", off, err)
		}
	}
	return der
}
