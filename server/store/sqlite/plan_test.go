package sqlite_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/internal/enrolltoken"
	"github.com/evident-dev/evident/proto/evidence"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	ingestsrv "github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/ingest/ingesttest"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// scansByDesign are the statements of the traced paths that read a whole
// table on purpose: the periodic rescore walks every device.
var scansByDesign = []string{
	"FROM devices ORDER BY hostname, id",
}

// TestHotPathsUseIndexes runs what every device does through the real
// ingest server over gRPC (enroll with a secret, open the evidence stream,
// send collection cycles, get them scored) and the periodic
// rescore, on a store already holding a fleet, traces every statement the
// store sends, and fails on any whose SQLite plan reads a whole table. An
// unindexed lookup is invisible in a test fleet and makes every enrollment
// and report cost a scan of the fleet at scale: a machine-id lookup that
// could not use its partial index once cut enrollment from 190 to 66
// devices/s between 2,000 and 12,000 devices.
func TestHotPathsUseIndexes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "evident.db")
	var mu sync.Mutex
	seen := map[string]bool{}
	sqlite.Dialect.Trace = func(q string) { mu.Lock(); seen[q] = true; mu.Unlock() }
	t.Cleanup(func() { sqlite.Dialect.Trace = nil })
	st := open(t, path, false)

	// A fleet already there, so a plan that scans has rows to scan.
	for i := range 200 {
		d := store.Device{ID: fmt.Sprintf("dev_%04d", i), Hostname: fmt.Sprintf("host-%04d", i), GOOS: "linux",
			MachineID: fmt.Sprintf("%032x", i), EnrolledAt: t0}
		if _, err := st.EnrollDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}

	srv := ingesttest.Start(t, &ingestsrv.Server{Store: st})
	ca := srv.CA

	secret := enrolltoken.NewSecret()
	if err := st.CreateEnrollSecret(ctx, store.EnrollSecret{ID: "sec_plan", Hash: enrolltoken.HashSecret(secret), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, host := range [][2]string{{"laptop-1", "linux"}, {"desk-2", "windows"}, {"mac-3", "darwin"}} {
		reportCycles(t, srv.Addr, ca, secret, host[0], host[1])
	}
	if err := srv.Rescore(ctx, time.Now().Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	sqlite.Dialect.Trace = nil

	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var queries []string
	for q := range seen {
		queries = append(queries, q)
	}
	sort.Strings(queries)
	checked := 0
	for _, q := range queries {
		verb := strings.ToUpper(strings.Fields(q)[0])
		if verb != "SELECT" && verb != "UPDATE" && verb != "DELETE" && verb != "INSERT" && verb != "WITH" {
			continue
		}
		byDesign := false
		for _, s := range scansByDesign {
			byDesign = byDesign || strings.Contains(q, s)
		}
		if byDesign {
			continue
		}
		args := make([]any, strings.Count(q, "?"))
		rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Errorf("EXPLAIN %s: %v", q, err)
			continue
		}
		var plan []string
		for rows.Next() {
			var id, parent, notUsed int
			var detail string
			if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		checked++
		// A subquery of the statement's own rows (an UPDATE's VALUES
		// list) is materialized and then scanned: not a table.
		own := map[string]bool{}
		for _, step := range plan {
			if f := strings.Fields(step); len(f) == 2 && f[0] == "MATERIALIZE" {
				own[f[1]] = true
			}
		}
		for _, step := range plan {
			if fullScan(step) && !own[strings.Fields(step)[1]] {
				t.Errorf("a traced statement reads a whole table (%s):\n%s\nplan:\n  %s", step, q, strings.Join(plan, "\n  "))
				break
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d statements traced: the workload did not run the paths it is meant to check", checked)
	}
}

// fullScan reports a plan step that reads a whole table: SQLite says
// "SCAN t" (without "USING ... INDEX", which reads an index in order).
// Tables that hold a fixed handful of rows are not a fleet's cost, nor are
// the aggregate deltas and the enrollment secrets' uses, folded away every
// second (the fold takes the oldest in rowid order, LIMIT bounded); nor a
// multi-row insert's own VALUES rows.
func fullScan(step string) bool {
	f := strings.Fields(step)
	if len(f) < 2 || f[0] != "SCAN" || strings.Contains(step, "USING") || strings.HasSuffix(step, "VALUES CLAUSE") || strings.HasSuffix(step, "CONSTANT ROWS") {
		return false
	}
	switch f[1] {
	case "CONSTANT", "posture_counts", "posture_deltas", "enroll_secret_uses", "leases", "schema_version":
		return false
	}
	return true
}

// cycle is one report of every collector the default policy reads, each a
// typed evidence payload (the server's tests never run the agent's
// collectors).
func cycle(t *testing.T, on, off bool) []*evidentv1.Observation {
	t.Helper()
	fw := evidence.FirewallPayload{Enabled: on, InboundDefaultDeny: on, Verdict: evidence.FirewallVerdictDeny, Reason: "IPv4 inbound denied by default", DecidedBy: "nftables",
		Backends: []evidence.FirewallBackend{{Name: "nftables", Active: true, InboundDefaultDeny: on}}}
	payloads := []struct {
		collector string
		version   int
		payload   any
	}{
		{evidence.DiskEncryption, evidence.DiskEncryptionParserVersion, evidence.DiskEncryptionPayload{Volumes: []evidence.DiskVolume{
			{Device: "/dev/nvme0n1p3", Mountpoints: []string{"/"}, Role: "system", Encrypted: on, Method: "LUKS2"}}}},
		{evidence.Firewall, evidence.FirewallParserVersion, fw},
		{evidence.SecureBoot, evidence.SecureBootParserVersion, evidence.SecureBootPayload{UEFI: true, Enabled: &on, SetupMode: &off, ShimValidation: &on}},
		{evidence.Patches, evidence.PatchesParserVersion, evidence.PatchesPayload{}},
		{evidence.TPM, evidence.TPMParserVersion, evidence.TPMPayload{}},
		{evidence.Antimalware, evidence.AntimalwareParserVersion, evidence.AntimalwarePayload{}},
		{evidence.ScreenLock, evidence.ScreenLockParserVersion, evidence.ScreenLockPayload{}},
		{evidence.OSInfo, evidence.OSInfoParserVersion, evidence.OSInfoPayload{}},
	}
	var out []*evidentv1.Observation
	for _, p := range payloads {
		b, err := json.Marshal(p.payload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &evidentv1.Observation{Collector: p.collector, Status: evidentv1.Observation_STATUS_OK, ParserVersion: uint32(p.version), PayloadJson: b,
			Sources: []*evidentv1.Source{{Kind: "command", Ref: "/usr/sbin/nft -j list ruleset", Excerpt: `"policy": "drop"`}}})
	}
	return out
}

// reportCycles enrolls one device through the Enrollment RPC and sends
// three collection cycles over its evidence stream, the second with a
// failing disk encryption and firewall, so statuses change.
func reportCycles(t *testing.T, addr string, ca *pki.CA, secret, hostname, goos string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	anon, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	mid := make([]byte, 16)
	_, _ = rand.Read(mid)
	resp, err := evidentv1.NewEnrollmentClient(anon).Enroll(ctx, &evidentv1.EnrollRequest{EnrollSecret: secret, Csr: csr,
		Host: &evidentv1.HostFacts{Hostname: hostname, Goos: goos, MachineId: hex.EncodeToString(mid)}})
	if err != nil {
		t.Fatalf("enroll %s: %v", hostname, err)
	}
	conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{{Certificate: [][]byte{resp.GetCertificate()}, PrivateKey: key}}}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := evidentv1.NewEvidenceClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Hello{Hello: &evidentv1.Hello{AgentVersion: "plan-test"}}}); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	for i := range 3 {
		obs := cycle(t, i != 1, false)
		for _, o := range obs {
			seq++
			o.Seq, o.CollectedAt = seq, timestamppb.New(time.Now())
		}
		if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: &evidentv1.Report{Observations: obs}}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		for err == nil && m.GetAck() == nil { // the Config sent after Hello
			m, err = stream.Recv()
		}
		if err != nil {
			t.Fatalf("%s cycle %d: %v", hostname, i, err)
		}
		if got := m.GetAck().GetUpToSeq(); got != seq {
			t.Fatalf("%s cycle %d: ack up to %d, want %d", hostname, i, got, seq)
		}
	}
	_ = stream.CloseSend()
}
