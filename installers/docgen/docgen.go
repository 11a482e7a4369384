// Command docgen writes a binary's man page and its bash, zsh and fish
// completion from the binary's own help: `BIN help` (the commands and the
// text around them) and `BIN COMMAND -h` (each command's flags). One source,
// so the man page, the completion and -h cannot disagree. package.sh runs it
// on a binary built for the build machine; `make man` too.
//
//	go run ./installers/docgen --bin ./bin/evident-agent --version 1.2.3 --date 2026-12-07 --out DIR
//
// writes DIR/evident-agent.1, DIR/evident-agent.bash, DIR/_evident-agent
// (zsh) and DIR/evident-agent.fish.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	bin := flag.String("bin", "", "the binary to document (required)")
	version := flag.String("version", "", "the version to print in the man page (required)")
	date := flag.String("date", "", "the man page's date, YYYY-MM-DD (required)")
	out := flag.String("out", ".", "directory to write the man page and completions to")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: docgen --bin BIN --version V --date YYYY-MM-DD [--out DIR]\n\nWrites BIN's man page (section 1) and bash, zsh and fish completion from BIN's own help.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *bin == "" || *version == "" || *date == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*bin, *version, *date, *out); err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
}

// helpOf runs bin with args in an empty environment (no EVIDENT_* setting
// leaks into the documented defaults) and returns what it printed.
func helpOf(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, b)
	}
	return string(b), nil
}

func run(bin, version, date, out string) error {
	top, err := helpOf(bin, "help")
	if err != nil {
		return err
	}
	name := filepath.Base(bin)
	p, err := parseHelp(name, top)
	if err != nil {
		return err
	}
	for i, c := range p.Commands {
		h, err := helpOf(bin, append(strings.Fields(c.Path), "-h")...)
		if err != nil {
			return err
		}
		p.Commands[i].About, p.Commands[i].Flags = parseFlags(h)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		name + ".1":    manPage(p, version, date),
		name + ".bash": bashCompletion(p),
		"_" + name:     zshCompletion(p),
		name + ".fish": fishCompletion(p),
	}
	for f, text := range files {
		if err := os.WriteFile(filepath.Join(out, f), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
