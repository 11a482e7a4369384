//go:build linux

package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/internal/diskfull"
)

// TestChaosShort is the standing part of the fault suite in `make test`:
// two of each fault kind against two agents, with every check of the long
// run (`make chaos`). It needs root on Linux to mount its file systems.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault run takes about a minute")
	}
	diskfull.MountForTest(t, 1<<20) // fails under CI, skips elsewhere, without the privilege
	var out, errOut bytes.Buffer
	// Within go test's own deadline, so that the run unmounts what it
	// mounted instead of being killed by the timeout.
	budget := 8 * time.Minute
	if d, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(d)-time.Minute)
	}
	code := run([]string{"-faults", "16", "-agents", "2", "-seed", "20261207", "-server-fs-mib", "64", "-max-duration", budget.String()}, &out, &errOut)
	t.Logf("\n%s%s", out.String(), errOut.String())
	if code != 0 {
		t.Fatalf("chaos exited %d", code)
	}
	// The report must show each kind injected and the totals line with
	// nothing lost or duplicated, and the gaps of the agent's full disk
	// reported.
	for _, f := range faults {
		if !regexp.MustCompile(`(?m)^\s*` + f.name + `\s+2\s`).MatchString(out.String()) {
			t.Errorf("fault %s not injected twice", f.name)
		}
	}
	all := regexp.MustCompile(`(?m)^\s*all\s+(\d+)\s+(\d+)\s+0\s+0\s+\d+\s+(\d+)\s+(\d+)\s*$`).FindStringSubmatch(out.String())
	if all == nil {
		t.Fatalf("no totals line with 0 duplicated and 0 lost")
	}
	if all[1] != all[2] || all[3] != all[4] || all[3] == "0" {
		t.Errorf("persisted %s, stored %s, cycles not stored %s, reported %s: want persisted = stored and some cycles not stored, all reported", all[1], all[2], all[3], all[4])
	}
	for _, kind := range []string{"agent-disk-full", "server-disk-full"} {
		if !strings.Contains(out.String(), kind+" faults that made a write fail: 2 of 2") {
			t.Errorf("a %s fault made no write fail", kind)
		}
	}
	if !strings.Contains(out.String(), "bundle verified") {
		t.Error("the bundle was not verified")
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "Flags:"},
		{[]string{"-faults", "0"}, 2, "must be at least 1"},
		{[]string{"-interval", "-1s"}, 2, "durations positive"},
		{[]string{"-server-fs-mib", "8"}, 2, "at least 16"},
		{[]string{"extra"}, 2, "no arguments"},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		if code := run(tt.args, &out, &errOut); code != tt.code || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, errOut.String(), tt.code, tt.want)
		}
	}
}
