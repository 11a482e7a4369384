// Command testsummary reads `go test -json` and prints what plain
// `go test` prints (a line per package, the output of failing tests,
// build errors), then every skipped test with its reason: `make test` ends
// with that list, so a newcomer sees which tests did not run here and why
// (under CI=true a missing required tool fails instead of skipping). It
// exits 1 when a test or a build failed, or when the input held no
// package result at all.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string
}

// skip is one skipped test and the reason it gave.
type skip struct{ Package, Test, Reason string }

func main() {
	skips, failed, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	printSkips(os.Stdout, skips)
	if failed {
		os.Exit(1)
	}
}

// summarize copies what plain go test would print from r to w and returns
// the skipped tests, and whether anything failed.
func summarize(r io.Reader, w io.Writer) ([]skip, bool, error) {
	type key struct{ pkg, test string }
	buf := map[key][]string{}
	var skips []skip
	failed, results := false, 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (go vet or the toolchain writing plainly).
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output)
		case "build-fail":
			failed = true
		case "output":
			if e.Test == "" {
				// Package lines: "ok", "FAIL", "?   … [no test files]";
				// "PASS" and the verbose "=== RUN" lines are left out,
				// as plain go test does.
				if o := strings.TrimSpace(e.Output); o != "PASS" && !strings.HasPrefix(o, "=== RUN") {
					fmt.Fprint(w, e.Output)
				}
				continue
			}
			buf[k] = append(buf[k], e.Output)
		case "fail":
			if e.Test == "" {
				failed = true
				results++
				continue
			}
			for _, o := range buf[k] {
				fmt.Fprint(w, o)
			}
			delete(buf, k)
			failed = true
		case "skip":
			if e.Test == "" {
				results++
				continue
			}
			skips = append(skips, skip{e.Package, e.Test, reason(buf[k])})
			delete(buf, k)
		case "pass":
			if e.Test == "" {
				results++
			}
			delete(buf, k)
		}
	}
	if err := sc.Err(); err != nil {
		return skips, true, err
	}
	if results == 0 {
		return skips, true, fmt.Errorf("no package result in the input: did go test run?")
	}
	return skips, failed, nil
}

// reason is what a skipped test logged, without the framework's lines.
func reason(out []string) string {
	var lines []string
	for _, o := range out {
		t := strings.TrimSpace(o)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		lines = append(lines, t)
	}
	if len(lines) == 0 {
		return "(no reason given)"
	}
	return strings.Join(lines, " ")
}

func printSkips(w io.Writer, skips []skip) {
	if len(skips) == 0 {
		fmt.Fprintln(w, "\nNo test skipped.")
		return
	}
	sort.Slice(skips, func(i, j int) bool {
		if skips[i].Package != skips[j].Package {
			return skips[i].Package < skips[j].Package
		}
		return skips[i].Test < skips[j].Test
	})
	fmt.Fprintf(w, "\n%d tests skipped (a test whose required tool is missing fails instead under CI=true):\n", len(skips))
	for _, s := range skips {
		fmt.Fprintf(w, "  %s %s: %s\n", s.Package, s.Test, s.Reason)
	}
}
