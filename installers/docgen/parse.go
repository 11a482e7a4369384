package main

import (
	"fmt"
	"regexp"
	"strings"
)

// Program is what a binary's help says.
type Program struct {
	Name    string
	Summary string // the help's first line, after "NAME: "
	// Commands in the order the usage lists them.
	Commands []Command
	// Notes are the paragraphs after the usage block.
	Notes []string
}

// Command is one command of the usage block.
type Command struct {
	Path  string   // "config show"
	Usage string   // the usage line: "config show [--json]"
	Help  []string // its description in the usage block
	About string   // its -h header, before "Flags:"
	Flags []Flag
}

// Flag is one flag of a command.
type Flag struct {
	Name  string // without dashes
	Value string // the value's kind ("string", "duration"); empty for a switch
	Help  []string
}

var word = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// commandPaths reads the command words of a usage line (after the program
// name): the words up to the first flag or placeholder. Alternatives give a
// path each: " | " between whole commands ("ca show | ca rotate"), "|"
// inside the last word ("waiver add|list|revoke").
func commandPaths(usage string) []string {
	var paths []string
	for _, alt := range strings.Split(usage, " | ") {
		var words []string
		var last []string
		for _, f := range strings.Fields(alt) {
			opts := strings.Split(f, "|")
			ok := true
			for _, o := range opts {
				ok = ok && word.MatchString(o)
			}
			if !ok {
				break
			}
			if last != nil {
				words = append(words, last[0])
			}
			last = opts
			if len(opts) > 1 {
				break
			}
		}
		for _, o := range last {
			paths = append(paths, strings.Join(append(append([]string{}, words...), o), " "))
		}
	}
	return paths
}

// parseHelp reads `NAME help`: a summary line, "Usage:", usage entries
// ("  NAME words  description", continued by deeper-indented lines) and
// paragraphs after them.
func parseHelp(name, help string) (Program, error) {
	p := Program{Name: name}
	lines := strings.Split(strings.ReplaceAll(help, "\r\n", "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], name+":") {
		return p, fmt.Errorf("%s help: the first line does not start with %q", name, name+":")
	}
	p.Summary = strings.TrimSpace(strings.TrimPrefix(lines[0], name+":"))
	i := 1
	for i < len(lines) && strings.TrimSpace(lines[i]) != "Usage:" {
		i++
	}
	if i == len(lines) {
		return p, fmt.Errorf("%s help: no Usage: block", name)
	}
	i++
	seen := map[string]bool{}
	var cur []int // the commands of the entry being read
	for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
		l := lines[i]
		if strings.HasPrefix(l, "  "+name+" ") {
			rest := strings.TrimPrefix(l, "  "+name+" ")
			usage, desc := rest, ""
			if j := strings.Index(rest, "  "); j >= 0 {
				usage, desc = strings.TrimSpace(rest[:j]), strings.TrimSpace(rest[j:])
			}
			cur = nil
			for _, path := range commandPaths(usage) {
				if seen[path] {
					continue
				}
				seen[path] = true
				p.Commands = append(p.Commands, Command{Path: path, Usage: usage})
				cur = append(cur, len(p.Commands)-1)
			}
			for _, c := range cur {
				if desc != "" {
					p.Commands[c].Help = append(p.Commands[c].Help, desc)
				}
			}
			continue
		}
		if t := strings.TrimSpace(l); t != "" {
			for _, c := range cur {
				p.Commands[c].Help = append(p.Commands[c].Help, t)
			}
		}
	}
	if len(p.Commands) == 0 {
		return p, fmt.Errorf("%s help: no command in the Usage: block", name)
	}
	var para []string
	for ; i <= len(lines); i++ {
		if i == len(lines) || strings.TrimSpace(lines[i]) == "" {
			if len(para) > 0 {
				p.Notes = append(p.Notes, strings.Join(para, " "))
				para = nil
			}
			continue
		}
		para = append(para, strings.TrimSpace(lines[i]))
	}
	return p, nil
}

// flagLine is a flag as Go's flag package prints it: "  -name type".
var flagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9-]*)(?: (\S+))?$`)

// parseFlags reads a command's -h: the text before "Flags:", then the
// flags as PrintDefaults prints them (a line "  -name [type]", then
// description lines indented with a tab).
func parseFlags(h string) (about string, flags []Flag) {
	lines := strings.Split(h, "\n")
	i := 0
	var head []string
	for ; i < len(lines) && strings.TrimSpace(lines[i]) != "Flags:"; i++ {
		if t := strings.TrimSpace(lines[i]); t != "" {
			head = append(head, t)
		}
	}
	about = strings.Join(head, " ")
	for ; i < len(lines); i++ {
		if m := flagLine.FindStringSubmatch(lines[i]); m != nil {
			flags = append(flags, Flag{Name: m[1], Value: m[2]})
			continue
		}
		if len(flags) > 0 && strings.HasPrefix(lines[i], "    \t") {
			f := &flags[len(flags)-1]
			f.Help = append(f.Help, strings.TrimSpace(lines[i]))
		}
	}
	return about, flags
}
