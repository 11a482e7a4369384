// Package tpmtest gives TPM tests a recorded real firmware event log and a
// way to extend it into a TPM's PCRs, so a simulator or swtpm (which boot no
// firmware and have no event log) reports PCRs that a real log replays to.
//
// The logs are the real machines' logs of go-attestation's test corpus
// (attest/testdata in the module, Apache-2.0), read from the module cache at
// test time and never copied into this repository:
//
//   - SecureBootLog: a UEFI machine with Secure Boot enabled (PCRs 0, 4, 5, 7).
//   - NoSecureBootLog: an Ubuntu 21.04 Google Cloud Shielded VM with Secure
//     Boot off (PCRs 0-9 and 14).
package tpmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Recorded logs by file name in go-attestation's attest/testdata.
const (
	SecureBootLog   = "sb_cert_eventlog"
	NoSecureBootLog = "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"
)

const module = "github.com/google/go-attestation"

var (
	dirOnce sync.Once
	dir     string
	dirErr  error
)

// moduleDir asks the go command where the go-attestation module this
// repository builds against lives.
func moduleDir() (string, error) {
	dirOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
		if err != nil {
			dirErr = err
			return
		}
		dir = strings.TrimSpace(string(out))
	})
	return dir, dirErr
}

// RecordedEventLog returns one of the recorded real event logs.
func RecordedEventLog(tb testing.TB, name string) []byte {
	tb.Helper()
	d, err := moduleDir()
	if err != nil || d == "" {
		tb.Fatalf("locate %s in the module cache (go mod download): %v", module, err)
	}
	b, err := os.ReadFile(filepath.Join(d, "attest", "testdata", name))
	if err != nil {
		tb.Fatalf("recorded event log: %v", err)
	}
	return b
}

// evNoAction events are informational and never extended (TCG PC Client
// PFP, EV_NO_ACTION).
const evNoAction = attest.EventType(0x3)

// ExtendEventLog extends every measured event of log into t's PCRs, in
// every bank both the log and the TPM have, as the firmware would have.
// It returns the banks extended.
func ExtendEventLog(tb testing.TB, t transport.TPM, log []byte) []attest.HashAlg {
	tb.Helper()
	el, err := attest.ParseEventLog(log)
	if err != nil {
		tb.Fatalf("parse event log: %v", err)
	}
	var done []attest.HashAlg
	for _, bank := range Banks(tb, t) {
		alg := tpm2.TPMIAlgHash(bank)
		var ha attest.HashAlg
		switch alg {
		case tpm2.TPMAlgSHA1:
			ha = attest.HashSHA1
		case tpm2.TPMAlgSHA256:
			ha = attest.HashSHA256
		case tpm2.TPMAlgSHA384:
			ha = attest.HashSHA384
		case tpm2.TPMAlgSHA512:
			ha = attest.HashSHA512
		default:
			continue
		}
		if !hasAlg(el, ha) {
			continue
		}
		for _, e := range el.Events(ha) {
			if e.Type == evNoAction || e.Index < 0 || e.Index > 23 {
				continue
			}
			_, err := tpm2.PCRExtend{
				PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(e.Index), Auth: tpm2.PasswordAuth(nil)},
				Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: alg, Digest: e.Digest}}},
			}.Execute(t)
			if err != nil {
				tb.Fatalf("extend PCR %d (%v): %v", e.Index, ha, err)
			}
		}
		done = append(done, ha)
	}
	if len(done) == 0 {
		tb.Fatal("the TPM has none of the event log's banks")
	}
	return done
}

func hasAlg(el *attest.EventLog, ha attest.HashAlg) bool {
	for _, a := range el.Algs {
		if a == ha {
			return true
		}
	}
	return false
}

// Banks returns the hash algorithms of t's allocated PCR banks (those with
// at least one PCR selected).
func Banks(tb testing.TB, t transport.TPM) []tpm2.TPMAlgID {
	tb.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, Property: 0, PropertyCount: 1}.Execute(t)
	if err != nil {
		tb.Fatalf("read PCR banks: %v", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		tb.Fatalf("read PCR banks: %v", err)
	}
	var out []tpm2.TPMAlgID
	for _, s := range sel.PCRSelections {
		for _, b := range s.PCRSelect {
			if b != 0 {
				out = append(out, tpm2.TPMAlgID(s.Hash))
				break
			}
		}
	}
	return out
}
