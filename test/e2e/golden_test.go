package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/collectors/all"
	"github.com/evident-dev/evident/platform/snapshot"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// normalize drops what changes from run to run from `collect --json`
// output: the duration, and the collection time of a live host (recorded is
// zero). A replayed snapshot dates its evidence at its recorded instant
// (plus the moments the replay takes): a collected_at within a minute of
// recorded is written as recorded, any other is kept as it is, to differ.
func normalize(t *testing.T, out []byte, recorded time.Time) []byte {
	t.Helper()
	var obs []map[string]any
	if err := json.Unmarshal(out, &obs); err != nil {
		t.Fatalf("collect --json is not JSON: %v\n%s", err, out)
	}
	for _, o := range obs {
		delete(o, "duration_ms")
		if recorded.IsZero() {
			delete(o, "collected_at")
			continue
		}
		s, _ := o["collected_at"].(string)
		if at, err := time.Parse(time.RFC3339Nano, s); err == nil && !at.Before(recorded) && at.Sub(recorded) < time.Minute {
			o["collected_at"] = recorded.UTC().Format(time.RFC3339Nano)
		}
	}
	b, err := json.MarshalIndent(obs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestGoldenSnapshots replays every recorded host snapshot with
// `evident-agent collect --host-snapshot DIR --json` and diffs the result
// against testdata/golden/NAME.json (node_exporter's end-to-end test is the
// model). Run `go test ./test/e2e -run Golden -update` after an intended
// change and review the diff. Each snapshot is replayed a second time by an
// agent whose clock reads 400 days on: a replay is the host as recorded, so
// nothing may change, collected_at included.
func TestGoldenSnapshots(t *testing.T) {
	dirs, err := filepath.Glob("testdata/snapshots/*")
	if err != nil {
		t.Fatal(err)
	}
	perOS := map[string]int{}
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			h, err := snapshot.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			perOS[h.GOOS()]++
			out, errOut, err := run(t, nil, agentBin, "collect", "--json", "--host-snapshot", dir)
			if err != nil {
				t.Fatalf("collect --host-snapshot: %v\n%s", err, errOut)
			}
			got := normalize(t, []byte(out), h.Manifest().RecordedAt)
			later, errOut, err := run(t, clockEnv(400*24*time.Hour), agentBin, "collect", "--json", "--host-snapshot", dir)
			if err != nil {
				t.Fatalf("collect --host-snapshot, 400 days on: %v\n%s", err, errOut)
			}
			if l := normalize(t, []byte(later), h.Manifest().RecordedAt); !bytes.Equal(got, l) {
				t.Errorf("replay of %s by an agent 400 days on differs:\n%s", dir, lineDiff(string(got), string(l)))
			}
			golden := filepath.Join("testdata/golden", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden file (run with -update once): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("replay of %s differs from %s:\n%s", dir, golden, lineDiff(string(want), string(got)))
			}
		})
	}
	var summary []string
	for goos, n := range perOS {
		summary = append(summary, goos+"="+strconv.Itoa(n))
	}
	sort.Strings(summary)
	t.Logf("golden snapshots per OS: %s", strings.Join(summary, " "))
	for _, goos := range []string{"linux", "darwin", "windows"} {
		if perOS[goos] < 3 {
			t.Errorf("%d %s snapshots; want at least 3", perOS[goos], goos)
		}
	}
}

// lineDiff shows the first lines that differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)) && len(out) < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			out = append(out, "- "+wl, "+ "+gl)
		}
	}
	return strings.Join(out, "\n")
}

// TestSnapshotReplaysLive records this machine with `evident-agent snapshot`
// and checks that replaying it gives what `collect` reads live.
func TestSnapshotReplaysLive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snap")
	if out, errOut, err := run(t, nil, agentBin, "snapshot", "--out", dir); err != nil || !strings.Contains(out, "written to") {
		t.Fatalf("snapshot: %v\n%s%s", err, out, errOut)
	}
	live, errOut, err := run(t, nil, agentBin, "collect", "--json")
	if err != nil {
		t.Fatalf("collect: %v\n%s", err, errOut)
	}
	replayed, errOut, err := run(t, nil, agentBin, "collect", "--json", "--host-snapshot", dir)
	if err != nil {
		t.Fatalf("collect --host-snapshot: %v\n%s", err, errOut)
	}
	if a, b := normalize(t, []byte(live), time.Time{}), normalize(t, []byte(replayed), time.Time{}); !bytes.Equal(a, b) {
		t.Fatalf("replayed snapshot differs from the live collection:\n%s", lineDiff(string(a), string(b)))
	}
	// A second snapshot into the same directory is refused, not merged.
	if _, errOut, err := run(t, nil, agentBin, "snapshot", "--out", dir); err == nil || !strings.Contains(errOut, "not empty") {
		t.Fatalf("snapshot over an existing one: err %v, stderr %q", err, errOut)
	}
}

// TestSnapshotLackingSourcesIsNotACrash replays a snapshot that recorded
// nothing: every collector reports, none crashes.
func TestSnapshotLackingSourcesIsNotACrash(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "windows"} {
		t.Run(goos, func(t *testing.T) {
			dir := t.TempDir()
			m := `{"goos":"` + goos + `","goarch":"amd64","hostname":"empty","commands":[],"wmi":[],"registry":[]}`
			if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(m), 0o644); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := run(t, nil, agentBin, "collect", "--json", "--host-snapshot", dir)
			if err != nil {
				t.Fatalf("collect: %v\n%s", err, errOut)
			}
			var obs []map[string]any
			if err := json.Unmarshal([]byte(out), &obs); err != nil || len(obs) != len(all.Default()) {
				t.Fatalf("got %d observations (%v):\n%s", len(obs), err, out)
			}
			for _, o := range obs {
				if e, _ := o["error"].(string); strings.Contains(e, "panic") {
					t.Errorf("%s panicked: %s", o["collector"], e)
				}
			}
		})
	}
}
