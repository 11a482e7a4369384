package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/internal/swtpmtest"
	"github.com/evident-dev/evident/internal/tpmtest"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// tpmServer starts a server that trusts swtpm's EK certificates.
func tpmServer(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	swtpmtest.CopyLocalCA(t, filepath.Join(dir, "ek-roots"))
	return startServer(t, dir, "127.0.0.1:0")
}

// enrollTPM enrolls agentDir bound to the swtpm on port and returns the
// device id, or the enrollment's error output.
func enrollTPM(t *testing.T, s *server, agentDir string, port int, machineID string, extra ...string) (string, string, error) {
	t.Helper()
	args := append([]string{"enroll", "--data-dir", agentDir, "--server", s.addr, "--tpm", fmt.Sprintf("swtpm:127.0.0.1:%d", port),
		"--machine-id", machineID}, extra...)
	out, errOut, err := run(t, []string{"EVIDENT_ENROLL_TOKEN=" + s.token(t)}, agentBin, args...)
	if err != nil {
		return "", out + errOut, err
	}
	f := strings.Fields(out)
	if len(f) < 3 || f[0] != "enrolled" || !strings.Contains(out, "bound to TPM swtpm:") {
		t.Fatalf("enroll printed %q", out)
	}
	return f[2], out, nil
}

func openStore(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(dir, "evident.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// controlStatus reads one control's open interval from the server.
func controlStatus(t *testing.T, dir, device, control string) store.ControlState {
	t.Helper()
	sts, err := openStore(t, dir).CurrentStates(context.Background(), device)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if s.ControlID == control {
			return s
		}
	}
	t.Fatalf("no state for %s", control)
	return store.ControlState{}
}

// TestTPMEnrollAttest: an agent bound to an swtpm (EK certificate from
// swtpm-localca, trusted by the server) enrolls with MakeCredential /
// ActivateCredential, answers the server's challenge with a quote over a
// recorded real event log extended into the PCRs, and the server verifies
// it: DC-TPM-01 passes on the quote and DC-BOOT-01 on the replayed log.
// Replaying the stored attestation is refused as a reused nonce.
func TestTPMEnrollAttest(t *testing.T) {
	swtpmtest.Require(t, "swtpm", "swtpm_setup")
	_, port := swtpmtest.Start(t)
	logFile := filepath.Join(t.TempDir(), "binary_bios_measurements")
	log := tpmtest.RecordedEventLog(t, tpmtest.SecureBootLog)
	if err := os.WriteFile(logFile, log, 0o644); err != nil {
		t.Fatal(err)
	}
	raw := swtpmtest.Dial(t, port)
	tpmtest.ExtendEventLog(t, raw, log)
	raw.Close()

	s := tpmServer(t)
	agentDir := t.TempDir()
	device, out, err := enrollTPM(t, s, agentDir, port, "m-tpm-1", "--tpm-event-log", logFile)
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	st := openStore(t, s.dir)
	dt, err := st.DeviceTPM(context.Background(), device)
	if err != nil {
		t.Fatalf("DeviceTPM: %v", err)
	}
	if dt.EKTrust != "manufacturer-certificate" || !strings.Contains(dt.EKCertIssuer, "swtpm-localca") || len(dt.AKPublic) == 0 {
		t.Errorf("enrolled TPM = trust %q issuer %q, AK %d bytes; want a certificate from swtpm-localca", dt.EKTrust, dt.EKCertIssuer, len(dt.AKPublic))
	}

	if o, e, err := run(t, nil, agentBin, "run", "--once", "--data-dir", agentDir, "--collectors", "osinfo,tpm,secureboot"); err != nil {
		t.Fatalf("run --once: %v\n%s%s", err, o, e)
	}
	a, err := st.LatestAttestation(context.Background(), device, false)
	if err != nil {
		t.Fatalf("no attestation stored: %v", err)
	}
	var v attest.Verdict
	if err := json.Unmarshal(a.Verdict, &v); err != nil {
		t.Fatal(err)
	}
	if !a.Verified || !v.Verified || v.EventLog != "replayed" || v.SecureBoot == nil || !v.SecureBoot.Enabled || a.FirstSeq == 0 || a.LastSeq < a.FirstSeq {
		t.Fatalf("attestation: verified %v, verdict %+v, covers %d-%d", a.Verified, v, a.FirstSeq, a.LastSeq)
	}
	if c := controlStatus(t, s.dir, device, "DC-TPM-01"); c.Status != store.Pass || !strings.Contains(c.Reason, "quote verified") {
		t.Errorf("DC-TPM-01 = %s (%s), want pass on the verified quote", c.Status, c.Reason)
	}
	if c := controlStatus(t, s.dir, device, "DC-BOOT-01"); c.Status != store.Pass || !strings.Contains(c.Reason, "from the TPM event log") {
		t.Errorf("DC-BOOT-01 = %s (%s), want pass from the event log", c.Status, c.Reason)
	}

	// The same attestation sent again, over the device's own mTLS
	// identity, names a nonce already used.
	var replay evidentv1.Attestation
	if err := proto.Unmarshal(a.Raw, &replay); err != nil {
		t.Fatal(err)
	}
	res := sendAttestation(t, agentDir, s.addr, &replay)
	if res.GetVerified() || !strings.Contains(strings.Join(res.GetReasons(), ";"), "already used") {
		t.Errorf("replayed attestation: %+v, want refused as a reused nonce", res)
	}
	if c := controlStatus(t, s.dir, device, "DC-TPM-01"); c.Status != store.Fail || !strings.Contains(c.Reason, "replayed attestation") {
		t.Errorf("after a replay DC-TPM-01 = %s (%s), want fail naming the replay", c.Status, c.Reason)
	}
}

// sendAttestation opens an evidence stream as the device enrolled in
// agentDir and sends one attestation; it returns the server's result.
func sendAttestation(t *testing.T, agentDir, addr string, a *evidentv1.Attestation) *evidentv1.AttestationResult {
	t.Helper()
	id, err := identity.Load(identity.Dir(agentDir))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := id.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	stream, err := openStream(t, addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Attestation{Attestation: a}}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("no attestation result: %v", err)
		}
		if r := m.GetAttestationResult(); r != nil {
			return r
		}
	}
}

// TestTPMChangeRefused: a known device cannot silently change its TPM or
// its attestation key; an admin's allowance lets one enrollment do it.
func TestTPMChangeRefused(t *testing.T) {
	swtpmtest.Require(t, "swtpm", "swtpm_setup")
	_, portA := swtpmtest.Start(t)
	_, portB := swtpmtest.Start(t)
	s := tpmServer(t)
	firstDir := t.TempDir()
	first, out, err := enrollTPM(t, s, firstDir, portA, "m-change")
	if err != nil {
		t.Fatalf("first enrollment: %v\n%s", err, out)
	}
	// The same agent (same TPM, same AK) enrolling again is allowed, and
	// retires the identity it replaces: one TPM, one live identity.
	retired := filepath.Join(t.TempDir(), "retired")
	if err := os.CopyFS(retired, os.DirFS(firstDir)); err != nil {
		t.Fatal(err)
	}
	old := first
	if first, out, err = enrollTPM(t, s, firstDir, portA, "m-change", "--force"); err != nil {
		t.Fatalf("re-enrollment with the same TPM and AK: %v\n%s", err, out)
	}
	if d := deviceRecord(t, s.dir, old); d.SupersededBy != first {
		t.Errorf("old device superseded by %q, want %q", d.SupersededBy, first)
	}
	if o, e, err := run(t, nil, agentBin, "run", "--once", "--once-timeout", "10s", "--data-dir", retired, "--collectors", "osinfo"); err == nil ||
		!strings.Contains(o+e, "retired") {
		t.Errorf("the retired identity still delivers: err %v\n%s%s", err, o, e)
	}

	// Same machine, another TPM (EK).
	_, out, err = enrollTPM(t, s, t.TempDir(), portB, "m-change")
	if err == nil || !strings.Contains(out, "changes its TPM (endorsement key)") || !strings.Contains(out, "allow-tpm-change "+first) {
		t.Fatalf("enrollment with a different EK: err %v\n%s\nwant refused, naming the admin command", err, out)
	}
	// Dropping the TPM is a change too.
	out, errOut, err := run(t, []string{"EVIDENT_ENROLL_TOKEN=" + s.token(t)}, agentBin, "enroll", "--data-dir", t.TempDir(),
		"--server", s.addr, "--tpm", "none", "--machine-id", "m-change")
	if err == nil || !strings.Contains(out+errOut, "enrolling without one") {
		t.Fatalf("enrollment without the TPM: err %v\n%s%s\nwant refused", err, out, errOut)
	}
	// Same TPM, a new AK (a reinstalled agent).
	_, out, err = enrollTPM(t, s, t.TempDir(), portA, "m-change")
	if err == nil || !strings.Contains(out, "changes its attestation key (AK)") {
		t.Fatalf("enrollment with a new AK: err %v\n%s\nwant refused", err, out)
	}

	if o, e, err := run(t, nil, serverBin, "device", "allow-tpm-change", "--data-dir", s.dir, first); err != nil {
		t.Fatalf("allow-tpm-change: %v\n%s%s", err, o, e)
	}
	second, out, err := enrollTPM(t, s, t.TempDir(), portB, "m-change")
	if err != nil {
		t.Fatalf("enrollment after the admin's allowance: %v\n%s", err, out)
	}
	if d := deviceRecord(t, s.dir, second); d.PreviousID != first {
		t.Errorf("new device linked to %q, want %q", d.PreviousID, first)
	}
	// The allowance was used up.
	if _, out, err := enrollTPM(t, s, t.TempDir(), portA, "m-change"); err == nil {
		t.Errorf("a second change went through on one allowance:\n%s", out)
	}
	if _, _, err := run(t, nil, serverBin, "device", "allow-tpm-change", "--data-dir", s.dir, "no-such-device"); err == nil {
		t.Error("allow-tpm-change accepted an unknown device")
	}
}

// TestTPMUntrustedEK: a server without the swtpm CA among its EK roots
// refuses the TPM, and says why.
func TestTPMUntrustedEK(t *testing.T) {
	swtpmtest.Require(t, "swtpm", "swtpm_setup")
	_, port := swtpmtest.Start(t)
	s := startServer(t, t.TempDir(), "127.0.0.1:0")
	_, out, err := enrollTPM(t, s, t.TempDir(), port, "m-untrusted")
	if err == nil || !strings.Contains(out, "TPM identity refused") || !strings.Contains(out, "PermissionDenied") {
		t.Fatalf("enrollment with an untrusted EK: err %v\n%s", err, out)
	}
}

// TestTPMRenewal: a TPM-bound device renews its certificate only with a
// quote by its enrolled attestation key over the server's challenge and the
// CSR. A copy of its identity files on a machine with another TPM (a new
// AK there) is refused; the device itself renews.
func TestTPMRenewal(t *testing.T) {
	swtpmtest.Require(t, "swtpm", "swtpm_setup")
	_, portA := swtpmtest.Start(t)
	_, portB := swtpmtest.Start(t)
	clk := newTestClock(t)
	dir := t.TempDir()
	swtpmtest.CopyLocalCA(t, filepath.Join(dir, "ek-roots"))
	s := startServerEnv(t, clk.env(), dir, "127.0.0.1:0")
	agentDir := t.TempDir()
	device, out, err := enrollTPM(t, s, agentDir, portA, "m-renew")
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	enrolledUntil := deviceRecord(t, s.dir, device).CertNotAfter
	clk.set(t, 61*day)

	// The copy: same key and certificate, another TPM, no AK blob (the
	// enrolled one only loads on its own TPM).
	copyDir := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(copyDir, os.DirFS(agentDir)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(copyDir, "outbox.db"))
	if err := os.Remove(identity.AKPath(identity.Dir(copyDir))); err != nil {
		t.Fatal(err)
	}
	_, e, err := run(t, clk.env(), agentBin, "run", "--once", "--data-dir", copyDir, "--collectors", "osinfo",
		"--tpm", fmt.Sprintf("swtpm:127.0.0.1:%d", portB), "--once-timeout", "20s")
	if !strings.Contains(e, "TPM proof refused") {
		t.Fatalf("renewal from a copy on another TPM: %v\n%s", err, e)
	}
	if d := deviceRecord(t, s.dir, device); !d.CertNotAfter.Equal(enrolledUntil) || d.NextCertSerial != "" {
		t.Fatalf("the copy was issued a certificate: %+v", d)
	}

	if o, e, err := run(t, clk.env(), agentBin, "run", "--once", "--data-dir", agentDir, "--collectors", "osinfo"); err != nil {
		t.Fatalf("run --once: %v\n%s%s", err, o, e)
	} else if !strings.Contains(e, "device certificate renewed") {
		t.Fatalf("the device did not renew:\n%s", e)
	}
	d := deviceRecord(t, s.dir, device)
	if !d.CertNotAfter.After(enrolledUntil.Add(60*day)) || d.NextCertSerial != "" {
		t.Fatalf("after the device's renewal: certificate until %s (enrolled until %s), next %q", d.CertNotAfter, enrolledUntil, d.NextCertSerial)
	}
}
