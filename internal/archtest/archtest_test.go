package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

// pkg is what go list says of one package.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
	// Ours marks a package of the module (set by load).
	Ours bool `json:"-"`
}

// importRule forbids the packages under from (paths relative to the
// module) to import the packages under any of forbid. A leaf may import
// nothing of the module but itself.
type importRule struct {
	from   []string
	forbid []string
	leaf   bool
	why    string
}

// rules are the import rules, test imports included: a test that needs the
// agent's collectors belongs to test/, not to the server.
var rules = []importRule{
	{from: []string{"server"}, forbid: []string{"agent", "collectors", "platform"},
		why: "the server never imports agent, collectors or platform"},
	{from: []string{"collectors"}, forbid: []string{"agent", "server"},
		why: "collectors never import agent or server"},
	{from: []string{"platform"}, forbid: []string{"collectors", "agent", "server"},
		why: "platform is below collectors and agent"},
	{from: []string{"platform"}, forbid: []string{"installers"},
		why: "platform is given the packaged service files, it does not reach into installers"},
	{from: []string{"proto/evidence"}, leaf: true,
		why: "the evidence contract imports nothing else of ours"},
	{from: []string{"proto/evident/v1"}, leaf: true,
		why: "the wire protocol imports nothing else of ours"},
}

// binaryRoots are the server's mains (relative to the module); none of
// binaryForbidden may be among their dependencies, on any target OS.
var binaryRoots = []string{"server/cmd/evident-server"}

// binaryForbidden are packages (path prefixes; relative ones are ours) the
// server binary must not link.
var binaryForbidden = []string{
	"agent", "collectors", "platform",
	"github.com/shirou/gopsutil", "github.com/go-ole/go-ole", "github.com/yusufpapurcu/wmi",
}

// goos are the targets checked: build tags change what a package imports.
var goos = []string{"linux", "darwin", "windows"}

// under reports whether path is prefix or below it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func underAny(path string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return under(path, p) })
}

// graph is one target's packages, keyed by path relative to the module
// (others keep their import path).
type graph map[string]pkg

// load reads a go list -json stream, naming the module's packages
// relative to module.
func load(r io.Reader, module string) (graph, error) {
	rel := func(p string) string {
		if p == module {
			return "."
		}
		return strings.TrimPrefix(p, module+"/")
	}
	ours := func(p string) bool { return p == module || strings.HasPrefix(p, module+"/") }
	g := graph{}
	dec := json.NewDecoder(r)
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return g, nil
		} else if err != nil {
			return nil, err
		}
		if p.Error != nil {
			return nil, fmt.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
		p.Ours = ours(p.ImportPath)
		p.ImportPath = rel(p.ImportPath)
		for _, list := range []*[]string{&p.Imports, &p.TestImports, &p.XTestImports} {
			for i, imp := range *list {
				(*list)[i] = rel(imp)
			}
		}
		g[p.ImportPath] = p
	}
}

// importViolations lists "A imports B: why" for every rule g breaks.
func importViolations(g graph) []string {
	var out []string
	for _, p := range g {
		if !p.Ours {
			continue
		}
		for _, r := range rules {
			if !underAny(p.ImportPath, r.from) {
				continue
			}
			for kind, list := range map[string][]string{"": p.Imports, " (in a test)": p.TestImports, " (in an external test)": p.XTestImports} {
				for _, imp := range list {
					bad := underAny(imp, r.forbid)
					if r.leaf {
						bad = g[imp].Ours && !underAny(imp, r.from)
					}
					if bad {
						out = append(out, fmt.Sprintf("%s imports %s%s: %s", p.ImportPath, imp, kind, r.why))
					}
				}
			}
		}
	}
	return out
}

// binaryViolations lists, for the dependencies of the server's mains, every
// import that brings in a forbidden package: "A imports B" where A is not
// itself forbidden.
func binaryViolations(g graph) []string {
	deps := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		if deps[p] {
			return
		}
		deps[p] = true
		for _, imp := range g[p].Imports {
			walk(imp)
		}
	}
	for _, r := range binaryRoots {
		walk(r)
	}
	var out []string
	for p := range deps {
		if underAny(p, binaryForbidden) {
			continue
		}
		for _, imp := range g[p].Imports {
			if underAny(imp, binaryForbidden) {
				out = append(out, fmt.Sprintf("%s imports %s: the server binary must not link agent, collectors, platform or their OS libraries", p, imp))
			}
		}
	}
	return out
}

func goList(t *testing.T, target string) (graph, string) {
	t.Helper()
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module := strings.TrimSpace(string(mod))
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Imports,TestImports,XTestImports,Error", module+"/...")
	cmd.Env = append(os.Environ(), "GOOS="+target)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("GOOS=%s go list: %v\n%s", target, err, stderr.Bytes())
	}
	g, err := load(bytes.NewReader(out), module)
	if err != nil {
		t.Fatalf("GOOS=%s go list: %v", target, err)
	}
	return g, module
}

func TestDependencyRules(t *testing.T) {
	found := map[string][]string{} // violation -> targets
	for _, target := range goos {
		g, _ := goList(t, target)
		for _, r := range binaryRoots {
			if _, ok := g[r]; !ok {
				t.Fatalf("GOOS=%s: %s not found: fix binaryRoots", target, r)
			}
		}
		for _, v := range append(importViolations(g), binaryViolations(g)...) {
			found[v] = append(found[v], target)
		}
	}
	var vs []string
	for v, targets := range found {
		if len(targets) < len(goos) {
			v += " [GOOS " + strings.Join(targets, ", ") + "]"
		}
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		t.Error(v)
	}
}

// The checker itself must notice each kind of broken rule.
func TestViolationsFound(t *testing.T) {
	g := graph{
		"server/cmd/evident-server":   {Ours: true, ImportPath: "server/cmd/evident-server", Imports: []string{"server/web", "internal/cli"}},
		"server/web":                  {Ours: true, ImportPath: "server/web", Imports: []string{"proto/evidence"}, XTestImports: []string{"collectors/all"}},
		"server/controls":             {Ours: true, ImportPath: "server/controls", Imports: []string{"collectors/firewall", "proto/evidence"}},
		"internal/cli":                {Ours: true, ImportPath: "internal/cli", Imports: []string{"github.com/yusufpapurcu/wmi"}},
		"collectors/firewall":         {Ours: true, ImportPath: "collectors/firewall", Imports: []string{"platform", "proto/evidence"}, TestImports: []string{"agent"}},
		"platform":                    {Ours: true, ImportPath: "platform", Imports: []string{"github.com/shirou/gopsutil/v4/host"}},
		"platform/service":            {Ours: true, ImportPath: "platform/service", TestImports: []string{"installers"}},
		"installers":                  {Ours: true, ImportPath: "installers"},
		"proto/evidence":              {Ours: true, ImportPath: "proto/evidence", Imports: []string{"time", "internal/clock"}, XTestImports: []string{"proto/evidence"}},
		"proto/evident/v1":            {Ours: true, ImportPath: "proto/evident/v1", Imports: []string{"google.golang.org/grpc"}},
		"github.com/yusufpapurcu/wmi": {ImportPath: "github.com/yusufpapurcu/wmi", Imports: []string{"github.com/go-ole/go-ole"}},
		"internal/clock":              {Ours: true, ImportPath: "internal/clock", Imports: []string{"time"}},
	}
	got := append(importViolations(g), binaryViolations(g)...)
	sort.Strings(got)
	want := []string{
		"collectors/firewall imports agent (in a test): collectors never import agent or server",
		"internal/cli imports github.com/yusufpapurcu/wmi: the server binary must not link agent, collectors, platform or their OS libraries",
		"platform/service imports installers (in a test): platform is given the packaged service files, it does not reach into installers",
		"proto/evidence imports internal/clock: the evidence contract imports nothing else of ours",
		"server/controls imports collectors/firewall: the server never imports agent, collectors or platform",
		"server/web imports collectors/all (in an external test): the server never imports agent, collectors or platform",
	}
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
