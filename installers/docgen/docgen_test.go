package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestCommandPaths(t *testing.T) {
	for _, tt := range []struct {
		usage string
		want  []string
	}{
		{"collect [--json]", []string{"collect"}},
		{"config show [--json]", []string{"config show"}},
		{"start | stop | restart", []string{"start", "stop", "restart"}},
		{"ca show | ca rotate [--overlap 720h]", []string{"ca show", "ca rotate"}},
		{"waiver add|list|revoke", []string{"waiver add", "waiver list", "waiver revoke"}},
		{"device revoke|retire --reason TEXT DEVICE", []string{"device revoke", "device retire"}},
		{"report period --from DATE --to DATE [--format text|json]", []string{"report period"}},
		{"token revoke TOKEN_ID", []string{"token revoke"}},
		{"inventory import FILE.csv", []string{"inventory import"}},
		{"verify BUNDLE", []string{"verify"}},
		{"--help", nil},
	} {
		if got := commandPaths(tt.usage); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("commandPaths(%q) = %q, want %q", tt.usage, got, tt.want)
		}
	}
}

func TestParseHelp(t *testing.T) {
	help := `tool: does things.

Usage:
  tool run [--once]     run it; --once
                        exits when done
  tool ca show | ca rotate
                        the CAs
  tool version

Settings come from flags.
See "tool COMMAND -h".

Second paragraph.
`
	p, err := parseHelp("tool", help)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, c := range p.Commands {
		paths = append(paths, c.Path+": "+strings.Join(c.Help, " / "))
	}
	want := []string{"run: run it; --once / exits when done", "ca show: the CAs", "ca rotate: the CAs", "version: "}
	if !reflect.DeepEqual(paths, want) || p.Summary != "does things." || len(p.Notes) != 2 {
		t.Errorf("parsed %q, summary %q, notes %q", paths, p.Summary, p.Notes)
	}
	for _, bad := range []string{"", "other: x\nUsage:\n  tool a\n", "tool: x\nno usage\n", "tool: x\nUsage:\n\n"} {
		if _, err := parseHelp("tool", bad); err == nil {
			t.Errorf("parseHelp(%q) accepted", bad)
		}
	}
	about, flags := parseFlags("tool run: run it.\n\nFlags:\n  -once\n    \tone cycle\n  -out string\n    \twhere\n    \tit goes (default \"x\")\n")
	if about != "tool run: run it." || len(flags) != 2 || flags[0].Value != "" || flags[1].Value != "string" || len(flags[1].Help) != 2 {
		t.Errorf("parseFlags: %q %+v", about, flags)
	}
}

// need finds a tool, failing under CI where .ci/run installs it.
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing under CI (.ci/run installs it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// TestGeneratedFromTheBinaries: the man pages of both binaries render
// without a groff warning, and each shell completes commands, subcommands,
// flags and file arguments from them.
func TestGeneratedFromTheBinaries(t *testing.T) {
	groff, bash, zsh, fish := need(t, "groff"), need(t, "bash"), need(t, "zsh"), need(t, "fish")
	out := t.TempDir()
	bins := t.TempDir()
	for _, b := range []struct{ name, pkg string }{{"evident-agent", "../../agent/cmd/evident-agent"}, {"evident-server", "../../server/cmd/evident-server"}} {
		bin := filepath.Join(bins, b.name)
		if o, err := exec.Command("go", "build", "-o", bin, b.pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, o)
		}
		if err := run(bin, "9.9.9", "2026-12-07", out); err != nil {
			t.Fatal(err)
		}
		page := filepath.Join(out, b.name+".1")
		if o, err := exec.Command(groff, "-man", "-ww", "-z", page).CombinedOutput(); err != nil || len(o) > 0 {
			t.Errorf("groff on %s: %v\n%s", page, err, o)
		}
		text, _ := os.ReadFile(page)
		for _, want := range []string{".TH " + strings.ToUpper(b.name) + " 1 \"2026-12-07\" \"evident 9.9.9\"", ".SH COMMANDS", `.BI \-\-data\-dir " string"`} {
			if !strings.Contains(string(text), want) {
				t.Errorf("%s lacks %q", page, want)
			}
		}
	}
	cases := []struct {
		line string // typed so far; the completion is of its last word
		want []string
		not  []string
	}{
		{"evident-agent ", []string{"collect", "config", "snapshot", "version"}, []string{"--json"}},
		{"evident-agent config ", []string{"show", "check", "write"}, []string{"collect"}},
		{"evident-agent config show --", []string{"--json", "--data-dir"}, []string{"--purge"}},
		{"evident-server waiver ", []string{"add", "list", "revoke"}, nil},
		{"evident-server ca ", []string{"show", "rotate"}, nil},
		{"evident-server run --", []string{"--config", "--web-cert", "--listen"}, []string{"--json"}},
	}
	shells := map[string]func(line string) string{
		"bash": func(line string) string {
			name := strings.Fields(line)[0]
			script := "source " + filepath.Join(out, name+".bash") + `
read -ra COMP_WORDS <<< "$LINE"; [[ $LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _` + strings.ReplaceAll(name, "-", "_") + `; printf '%s\n' "${COMPREPLY[@]}"`
			cmd := exec.Command(bash, "-c", script)
			cmd.Env = append(os.Environ(), "LINE="+line)
			o, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, o)
			}
			return string(o)
		},
		"zsh": func(line string) string {
			name := strings.Fields(line)[0]
			script := `compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@" }
_files() { print -r -- "<files>" }
words=(x); CURRENT=1
source ` + filepath.Join(out, "_"+name) + ` >/dev/null
words=(${(z)LINE}); [[ $LINE == *" " ]] && words+=("")
CURRENT=$#words; _` + strings.ReplaceAll(name, "-", "_")
			cmd := exec.Command(zsh, "-f", "-c", script)
			cmd.Env = append(os.Environ(), "LINE="+line)
			o, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("zsh: %v\n%s", err, o)
			}
			return string(o)
		},
		"fish": func(line string) string {
			name := strings.Fields(line)[0]
			cmd := exec.Command(fish, "--no-config", "-c", "source "+filepath.Join(out, name+".fish")+`; complete -C"$LINE"`)
			cmd.Env = append(os.Environ(), "LINE="+line)
			o, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("fish: %v\n%s", err, o)
			}
			return string(o)
		},
	}
	for shell, complete := range shells {
		for _, c := range cases {
			got := map[string]bool{}
			for _, l := range strings.Split(complete(c.line), "\n") {
				if w, _, _ := strings.Cut(l, "\t"); w != "" {
					got[w] = true
				}
			}
			for _, w := range c.want {
				if !got[w] {
					t.Errorf("%s: %q does not offer %q (offers %v)", shell, c.line, w, got)
				}
			}
			for _, w := range c.not {
				if got[w] {
					t.Errorf("%s: %q offers %q", shell, c.line, w)
				}
			}
		}
	}
}
