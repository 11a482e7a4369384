package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/internal/enrolltoken"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// openStream opens an evidence stream to addr with tlsConf; the
// connection closes when the test ends.
func openStream(t *testing.T, addr string, tlsConf *tls.Config) (evidentv1.Evidence_StreamClient, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() { cancel(); conn.Close() })
	return evidentv1.NewEvidenceClient(conn).Stream(ctx)
}

// streamOnce opens an evidence stream with tlsConf, sends one report of
// seqs, and returns the ack or the error the server answered with.
func streamOnce(t *testing.T, addr string, tlsConf *tls.Config, seqs ...uint64) (uint64, error) {
	t.Helper()
	stream, err := openStream(t, addr, tlsConf)
	if err != nil {
		return 0, err
	}
	rep := &evidentv1.Report{}
	for _, s := range seqs {
		rep.Observations = append(rep.Observations, &evidentv1.Observation{Seq: s, Collector: "osinfo",
			CollectedAt: timestamppb.Now(), Status: evidentv1.Observation_STATUS_OK, PayloadJson: []byte(`{"hostname":"x"}`)})
	}
	if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: rep}}); err != nil {
		_, rerr := stream.Recv()
		return 0, rerr
	}
	m, err := recvAnswer(stream)
	if err != nil {
		return 0, err
	}
	return m.GetAck().GetUpToSeq(), nil
}

// recvAnswer receives the server's answer to a report (an Ack or Busy),
// skipping what it sends besides: Config and TrustBundle after a Hello, the
// device's Posture after a scored report.
func recvAnswer(stream evidentv1.Evidence_StreamClient) (*evidentv1.ServerMessage, error) {
	for {
		m, err := stream.Recv()
		if err != nil || m.GetAck() != nil || m.GetBusy() != nil {
			return m, err
		}
	}
}

// serverTLS trusts the server's CA, as an enrolled agent does, and presents
// cert as the client certificate.
func serverTLS(t *testing.T, srvDir string, cert *tls.Certificate) *tls.Config {
	t.Helper()
	ca, err := pki.LoadOrCreate(filepath.Join(srvDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		// Always present the certificate, even when the server's list of
		// acceptable CAs does not name its issuer (Go's client would
		// otherwise quietly send none).
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

// deviceCert makes a client certificate naming deviceID, signed by signer.
func deviceCert(t *testing.T, deviceID string, signer *x509.Certificate, signerKey any) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(pki.DeviceURIPrefix + deviceID)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: deviceID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{u},
		IsCA: signer == nil, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	parent, pkey := signer, signerKey
	if signer == nil {
		parent, pkey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, pkey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestSecurityBoundaries(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	srv := startServer(t, srvDir, "127.0.0.1:0")
	devA := enroll(t, srv, filepath.Join(root, "a"), srv.token(t))
	devB := enroll(t, srv, filepath.Join(root, "b"), srv.token(t))
	// A and B present the same machine id (one host): B is linked to A as
	// a re-enrollment but must never receive A's identity, or anyone holding
	// the fleet token could write evidence as another device.
	if devA == devB {
		t.Fatalf("an enrollment presenting device A's machine id got A's identity %s", devA)
	}
	if d := deviceRecord(t, srvDir, devB); d.PreviousID != devA || d.Reenrolled != 1 {
		t.Fatalf("device B: previous %q reenrolled %d; want linked to %s", d.PreviousID, d.Reenrolled, devA)
	}
	idA, err := identity.Load(identity.Dir(filepath.Join(root, "a")))
	if err != nil {
		t.Fatal(err)
	}
	confA, err := idA.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	confA.ServerName = "127.0.0.1"

	t.Run("device writes only its own evidence", func(t *testing.T) {
		// The protocol has no device field: whatever A sends lands on A.
		ack, err := streamOnce(t, srv.addr, confA, 1, 2, 3)
		if err != nil || ack != 3 {
			t.Fatalf("device A report: ack %d, err %v", ack, err)
		}
		if a, b := counts(t, srvDir, devA), counts(t, srvDir, devB); a.Total != 3 || b.Total != 0 {
			t.Fatalf("after A's report: A has %d observations, B has %d; want 3 and 0", a.Total, b.Total)
		}
	})

	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherCA := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rogue CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	otherDER, _ := x509.CreateCertificate(rand.Reader, otherCA, otherCA, &otherKey.PublicKey, otherKey)
	otherCA, _ = x509.ParseCertificate(otherDER)
	rogue := deviceCert(t, devB, otherCA, otherKey)
	selfSigned := deviceCert(t, devB, nil, nil)

	// A certificate from the real CA for a device the server never enrolled.
	caDir := filepath.Join(srvDir, "pki")
	caKeyPEM, err := os.ReadFile(filepath.Join(caDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	realCA, err := pki.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := parseECKey(caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	unenrolled := deviceCert(t, pki.NewDeviceID(), realCA.Cert, caKey)

	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want codes.Code
		msg  string
	}{
		{"no client certificate", nil, codes.Unauthenticated, "device certificate is required"},
		{"certificate from another CA claiming device B", &rogue, codes.Unavailable, ""},
		{"self-signed certificate claiming device B", &selfSigned, codes.Unavailable, ""},
		{"real CA, device never enrolled", &unenrolled, codes.PermissionDenied, "not enrolled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := streamOnce(t, srv.addr, serverTLS(t, srvDir, tc.cert), 1)
			if status.Code(err) != tc.want || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v; want code %s containing %q", err, tc.want, tc.msg)
			}
			if b := counts(t, srvDir, devB); b.Total != 0 {
				t.Fatalf("device B has %d observations after a refused stream", b.Total)
			}
		})
	}

	t.Run("enrollment", func(t *testing.T) {
		good := srv.token(t, "--single-use")
		parts := strings.Split(good, ".")
		wrongSecret := parts[0] + ".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa." + parts[2]
		wrongPin := parts[0] + "." + parts[1] + "." + strings.Repeat("0", 64)
		expired := srv.token(t, "--expires", "1ns")
		for _, tc := range []struct {
			name, token, want string
		}{
			{"wrong secret", wrongSecret, "enrollment secret is not valid"},
			{"expired secret", expired, "enrollment secret is not valid"},
			{"token pinned to another CA", wrongPin, "does not contain the CA pinned"},
			{"malformed token", "not-a-token", "want evt1.<secret>.<ca-sha256>"},
			{"single-use secret, first use", good, ""},
			{"single-use secret, second use", good, "enrollment secret is not valid"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, errOut, err := run(t, []string{"EVIDENT_ENROLL_TOKEN=" + tc.token}, agentBin,
					"enroll", "--data-dir", t.TempDir(), "--server", srv.addr)
				if tc.want == "" {
					if err != nil {
						t.Fatalf("enroll failed: %v\n%s", err, errOut)
					}
					return
				}
				if err == nil {
					t.Fatalf("enroll succeeded (%s); want refusal %q", out, tc.want)
				}
				if !strings.Contains(errOut, tc.want) {
					t.Fatalf("stderr %q does not explain %q", errOut, tc.want)
				}
				if strings.Contains(errOut, parts[1]) {
					t.Fatalf("stderr leaks the secret: %q", errOut)
				}
			})
		}
	})

	t.Run("bad request does not spend a single-use secret", func(t *testing.T) {
		token := srv.token(t, "--single-use")
		tok, err := enrolltoken.Parse(token)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(credentials.NewTLS(identity.PinnedTLS("127.0.0.1", tok.CAPin))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = evidentv1.NewEnrollmentClient(conn).Enroll(context.Background(),
			&evidentv1.EnrollRequest{EnrollSecret: tok.Secret, Csr: []byte("not a CSR"), Host: &evidentv1.HostFacts{Hostname: "x"}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "csr") {
			t.Fatalf("enroll with a garbage CSR: %v; want InvalidArgument about the csr", err)
		}
		if _, errOut, err := run(t, []string{"EVIDENT_ENROLL_TOKEN=" + token}, agentBin, "enroll", "--data-dir", t.TempDir(), "--server", srv.addr); err != nil {
			t.Fatalf("the single-use token was spent by a refused request: %v\n%s", err, errOut)
		}
	})

	// An observation the server cannot accept is stored as a visible
	// rejection and acked: refusing the whole report would make the agent
	// resend it forever.
	t.Run("invalid observation is recorded, not a poison pill", func(t *testing.T) {
		conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(credentials.NewTLS(confA)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stream, err := evidentv1.NewEvidenceClient(conn).Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rep := &evidentv1.Report{Observations: []*evidentv1.Observation{
			{Seq: 10, Collector: "osinfo", CollectedAt: timestamppb.Now(), Status: evidentv1.Observation_STATUS_OK, PayloadJson: []byte(`{"a":1}`)},
			{Seq: 11, Collector: "osinfo", CollectedAt: timestamppb.Now(), Status: evidentv1.Observation_STATUS_OK, PayloadJson: []byte(`not json`)},
		}}
		if err := stream.Send(&evidentv1.AgentMessage{Msg: &evidentv1.AgentMessage_Report{Report: rep}}); err != nil {
			t.Fatal(err)
		}
		m, err := recvAnswer(stream)
		if err != nil || m.GetAck().GetUpToSeq() != 11 {
			t.Fatalf("ack %v, err %v; want ack 11", m, err)
		}
		st, err := sqlite.Open(filepath.Join(srvDir, "evident.db"), true)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		latest, err := st.Latest(context.Background(), devA)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := latest["server.rejected"]
		if !ok || r.Seq != 11 || !strings.Contains(r.Error, "not valid JSON") {
			t.Fatalf("rejected observation stored as %+v (found %v)", r, ok)
		}
	})

	// A dialer that never completes TLS must not hold the server: plain TCP
	// garbage is refused and the server keeps serving.
	t.Run("garbage on the port", func(t *testing.T) {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		c.Close()
		if ack, err := streamOnce(t, srv.addr, confA, 4); err != nil || ack != 4 {
			t.Fatalf("server unhealthy after garbage: ack %d err %v", ack, err)
		}
	})
}
