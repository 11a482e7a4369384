//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The generator and the server, built once for the tests.
var loadBin, serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "evident-load-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	loadBin, serverBin = filepath.Join(dir, "load"), filepath.Join(dir, "evident-server")
	// One go build for both: a missing or broken package fails every test.
	if out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), ".", "../../server/cmd/evident-server").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the generator and the server: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestLoadExactlyOnce runs the generator as a user would: 20 devices over
// two worker processes against one spawned server, reporting every 200 ms
// for 5 s, and reads its -json summary.
func TestLoadExactlyOnce(t *testing.T) {
	cmd := exec.Command(loadBin, "-devices", "20", "-spawn", "1", "-bin", serverBin, "-interval", "200ms",
		"-duration", "5s", "-drain", "20s", "-procs", "2", "-snapshots", "../e2e/testdata/snapshots",
		"-data-dir", filepath.Join(t.TempDir(), "server"), "-json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	t.Logf("ran in %s; progress:\n%s", time.Since(t0).Round(time.Millisecond), stderr.String())
	if err != nil {
		t.Fatalf("load: %v\n%s", err, stdout.String())
	}
	var sum summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("the -json summary does not parse: %v\n%s", err, stdout.String())
	}
	if sum.Devices != 20 || sum.Enrolled != 20 || sum.EnrollFailed != 0 || sum.Procs != 2 {
		t.Errorf("devices %d, enrolled %d, enroll failures %d, procs %d; want 20, 20, 0, 2", sum.Devices, sum.Enrolled, sum.EnrollFailed, sum.Procs)
	}
	if sum.PeakStreams != 20 || sum.ClosedCleanly != 20 {
		t.Errorf("peak streams %d, closed cleanly %d; want 20 and 20", sum.PeakStreams, sum.ClosedCleanly)
	}
	if sum.Reports == 0 || sum.Observations < sum.Reports || sum.AckP50Ms <= 0 || sum.AckP99Ms < sum.AckP50Ms {
		t.Errorf("acked %d reports, %d observations, ack p50 %.1f ms, p99 %.1f ms: want some, with latencies", sum.Reports, sum.Observations, sum.AckP50Ms, sum.AckP99Ms)
	}
	if s := sum.Server; s == nil || s.Replicas != 1 || s.PeakRSSMiB <= 0 || s.CPUS <= 0 {
		t.Errorf("server figures %+v: want one replica with its RSS and CPU", s)
	}
	x := sum.ExactlyOnce
	if !x.Checked || !x.OK || x.Devices != 20 || x.Observations != uint64(sum.Observations) || x.Undrained != 0 {
		t.Errorf("exactly-once %+v: want checked and passed for 20 devices and the %d acked observations", x, sum.Observations)
	}
	if !strings.Contains(x.Message, "all stored once") {
		t.Errorf("exactly-once message %q", x.Message)
	}
}

// TestBadFlags: a bad command line is a usage error (exit 2) that says what
// is wrong, never a panic.
func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-devices", "0"}, "-devices must be"},
		{[]string{"-devices", "1000001"}, "-devices must be"},
		{[]string{"-window", "0"}, "-window must be"},
		{[]string{"-interval", "0s"}, "-interval must be"},
		{[]string{"-duration", "-1s"}, "-duration must be"},
		{[]string{"-procs", "3", "-devices", "2"}, "-procs must be"},
		{[]string{"-server", "127.0.0.1:1", "-spawn", "2"}, "not both"},
		{[]string{"-server", "nohostport", "-secret", "evt1.x.y"}, "want HOST:PORT"},
		{[]string{"-server", "127.0.0.1:1"}, "needs -secret"},
		{[]string{"-server", "127.0.0.1:1", "-secret", "bare"}, "give -ca"},
		{[]string{"-secret", "evt1.x.y"}, "are for -server"},
		{[]string{"-spawn", "0"}, "-spawn must be"},
		{[]string{"-devices", "many"}, "invalid value"},
		{[]string{"stray"}, "unexpected argument"},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(loadBin, tc.args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("load %v: %v, want exit status 2\n%s", tc.args, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.want) || strings.Contains(stderr.String(), "panic") {
			t.Errorf("load %v printed %q, want it to say %q", tc.args, stderr.String(), tc.want)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Errorf("empty histogram: p50 %s, want 0", h.quantile(0.5))
	}
	for i := 1; i <= 100; i++ {
		h[bucketOf(time.Duration(i)*time.Millisecond)]++
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		got := h.quantile(tc.q)
		if got < tc.want || float64(got) > 1.1*float64(tc.want) {
			t.Errorf("quantile(%v) = %s, want within 10%% above %s", tc.q, got, tc.want)
		}
	}
}

// The CPU of a child that has exited is counted in its parent's tree (a
// PostgreSQL backend closed during a run, in the postmaster's), and not
// in the parent's own time.
func TestProcTreeCPUCountsExitedChildren(t *testing.T) {
	self := os.Getpid()
	_, own0 := procUsage(self)
	tree0 := procTreeCPU(self)
	// About 0.3 s of CPU in a child, which this process then waits for.
	spin := exec.Command("sh", "-c", `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`)
	if out, err := spin.CombinedOutput(); err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	child := spin.ProcessState.UserTime() + spin.ProcessState.SystemTime()
	if child < 50*time.Millisecond {
		t.Fatalf("the child used %v of CPU: too little to tell", child)
	}
	_, own := procUsage(self)
	tree := procTreeCPU(self)
	if got := tree - tree0 - (own - own0); got < child/2 {
		t.Errorf("exited child's CPU counted: %v, want about %v", got, child)
	}
	if own-own0 > child/2 {
		t.Errorf("own CPU grew by %v while the child ran %v: the child's time is in it", own-own0, child)
	}
}

func TestScaleErrorKinds(t *testing.T) {
	tests := []struct {
		name   string
		errors map[string]int64
		want   string
	}{
		{"none", nil, ""},
		{"zero counts are left out", map[string]int64{"stream: Unavailable": 0}, ""},
		{"most frequent first, ties by name", map[string]int64{"stream: Unavailable": 3, "enroll: DeadlineExceeded": 7, "stream: DeadlineExceeded": 3},
			"enroll: DeadlineExceeded 7; stream: DeadlineExceeded 3; stream: Unavailable 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := scaleRow{sum: summary{}}
			r.sum.Errors = tt.errors
			if got := r.errorKinds(); got != tt.want {
				t.Errorf("errorKinds() = %q, want %q", got, tt.want)
			}
		})
	}
}
