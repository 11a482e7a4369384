// Command vulncheck reads the JSON stream of `govulncheck -format json` on
// standard input and fails when the code calls a vulnerable function that is
// not listed, with its reason, in the accepted file.
//
// govulncheck itself fails on every called vulnerability, including entries
// whose database record names no fixed version although the version in use
// carries the fix. Such an entry is accepted here only with a written reason
// and is printed on every run, so it stays visible.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
}

type message struct {
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

// finding is one vulnerability the code reaches.
type finding struct {
	id, summary, module, version, fixed string
	called                              bool
}

func main() {
	accepted := flag.String("accepted", "", "file of accepted vulnerabilities: an id and its reason per line (# comments)")
	flag.Parse()
	acc, err := readAccepted(*accepted)
	if err == nil {
		err = check(os.Stdin, os.Stdout, acc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(1)
	}
}

// readAccepted reads "GO-YYYY-NNNN reason..." lines; a line without a
// reason is an error.
func readAccepted(path string) (map[string]string, error) {
	acc := map[string]string{}
	if path == "" {
		return acc, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason, _ := strings.Cut(line, " ")
		if strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("%s:%d: %s has no reason", path, n+1, id)
		}
		acc[id] = strings.TrimSpace(reason)
	}
	return acc, nil
}

// check reads the stream and reports; it returns an error when a called
// vulnerability is not accepted or the stream is not govulncheck's.
func check(r io.Reader, w io.Writer, acc map[string]string) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	summaries := map[string]string{}
	found := map[string]*finding{}
	messages := 0
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("reading govulncheck output: %w", err)
		}
		messages++
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		if f := m.Finding; f != nil && len(f.Trace) > 0 {
			top := f.Trace[0]
			e := found[f.OSV]
			if e == nil {
				e = &finding{id: f.OSV, module: top.Module, version: top.Version, fixed: f.FixedVersion}
				found[f.OSV] = e
			}
			e.called = e.called || top.Function != ""
		}
	}
	if messages == 0 {
		return errors.New("no govulncheck output on standard input")
	}
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var failing, imported int
	for _, id := range ids {
		f := found[id]
		if !f.called {
			imported++
			continue
		}
		fixed := f.fixed
		if fixed == "" {
			fixed = "no fixed version"
		}
		what := fmt.Sprintf("%s %s@%s (fixed: %s): %s", id, f.module, f.version, fixed, summaries[id])
		if reason, ok := acc[id]; ok {
			fmt.Fprintf(w, "accepted  %s\n          reason: %s\n", what, reason)
			continue
		}
		failing++
		fmt.Fprintf(w, "CALLED    %s\n", what)
	}
	fmt.Fprintf(w, "vulncheck: %d called vulnerabilities not accepted, %d accepted, %d in required modules but not called\n",
		failing, len(ids)-imported-failing, imported)
	if failing > 0 {
		return fmt.Errorf("%d vulnerable functions are called: upgrade the module or the Go toolchain", failing)
	}
	return nil
}
