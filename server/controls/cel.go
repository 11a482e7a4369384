package controls

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/store"
)

// DeviceFacts is what policy expressions know of a device: the variable
// device in groups, applies_to and cel check expressions.
type DeviceFacts struct {
	OS        string   `cel:"os"`         // "linux", "darwin" or "windows"
	Hostname  string   `cel:"hostname"`   // as the agent reported it
	OSVersion string   `cel:"os_version"` // as the agent reported it
	Groups    []string `cel:"groups"`     // group names; Evaluate adds the policy's matching groups
}

// FactsOf returns the facts of a stored device.
func FactsOf(d store.Device) *DeviceFacts {
	return &DeviceFacts{OS: d.GOOS, Hostname: d.Hostname, OSVersion: d.OSVersion}
}

// groupDevice is the device as group expressions see it: without groups,
// so that a group cannot be defined in terms of groups.
type groupDevice struct {
	OS        string `cel:"os"`
	Hostname  string `cel:"hostname"`
	OSVersion string `cel:"os_version"`
}

// celObservation is the observation variable of a cel check.
type celObservation struct {
	Collector   string    `cel:"collector"`
	Seq         uint64    `cel:"seq"`
	CollectedAt time.Time `cel:"collected_at"`
	Status      string    `cel:"status"`
}

// Limits on policy expressions. An expression longer than
// MaxExpressionLength is refused at Parse; one whose evaluation costs more
// than MaxExpressionCost (CEL's runtime cost units, roughly one per
// operation and per element a comprehension visits) stops with an error,
// which makes the control unknown.
const (
	MaxExpressionLength = 2048
	MaxExpressionCost   = 100_000
)

// Expression kinds, by the environment they are compiled in.
type exprKind int

const (
	groupExpr exprKind = iota // device (without groups)
	scopeExpr                 // device
	checkExpr                 // device, payload, observation, now
)

var envs = sync.OnceValues(func() ([3]*cel.Env, error) {
	common := []cel.EnvOption{
		cel.ParserRecursionLimit(64),
		ext.Strings(),
	}
	g, err := cel.NewEnv(append(common,
		ext.NativeTypes(reflect.TypeFor[groupDevice](), ext.ParseStructTags(true)),
		cel.Variable("device", cel.ObjectType("controls.groupDevice")))...)
	if err != nil {
		return [3]*cel.Env{}, err
	}
	s, err := cel.NewEnv(append(common,
		ext.NativeTypes(reflect.TypeFor[DeviceFacts](), ext.ParseStructTags(true)),
		cel.Variable("device", cel.ObjectType("controls.DeviceFacts")))...)
	if err != nil {
		return [3]*cel.Env{}, err
	}
	c, err := s.Extend(
		ext.NativeTypes(reflect.TypeFor[celObservation](), ext.ParseStructTags(true)),
		cel.Variable("payload", cel.DynType),
		cel.Variable("observation", cel.ObjectType("controls.celObservation")),
		cel.Variable("now", cel.TimestampType))
	if err != nil {
		return [3]*cel.Env{}, err
	}
	return [3]*cel.Env{g, s, c}, nil
})

// sizeCost charges string functions for the strings they make: CEL's own
// costs charge replace one unit however much it grows the string, so a
// short chain of replace calls could build gigabytes within the cost limit
// and take the server down. replace is charged a unit per byte it returns
// (the largest string one can make is then about MaxExpressionCost bytes,
// and the largest single step a few hundred MB before the limit stops the
// evaluation), the other string functions, which do not grow their input
// more than the expression's own length, a unit per 8 bytes.
type sizeCost struct{}

func (sizeCost) CallCost(function, _ string, _ []ref.Val, result ref.Val) *uint64 {
	s, ok := result.(types.String)
	if !ok {
		return nil // CEL's own cost
	}
	n := uint64(len(s))
	if function != "replace" {
		n /= 8
	}
	n++
	return &n
}

// program is one compiled boolean expression.
type program struct {
	src  string
	prog cel.Program
}

// compileExpr compiles a boolean expression of kind k. Its errors carry
// CEL's position and a caret under the offending spot.
func compileExpr(k exprKind, src string) (*program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("expression is empty")
	}
	if n := len([]rune(src)); n > MaxExpressionLength {
		return nil, fmt.Errorf("expression is %d characters long, more than the limit of %d", n, MaxExpressionLength)
	}
	e, err := envs()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	a, iss := e[k].Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, errors.New(strings.ReplaceAll(iss.Err().Error(), " (in container '')", ""))
	}
	if !a.OutputType().IsExactType(types.BoolType) {
		return nil, fmt.Errorf("expression must be a bool, not %s: %s", a.OutputType(), src)
	}
	p, err := e[k].Program(a, cel.CostLimit(MaxExpressionCost), cel.CostTracking(sizeCost{}), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	prog := &program{src: src, prog: p}
	// A trial run on an empty device: an expression that exceeds the cost
	// limit even then (a chain of replace calls growing a string from
	// nothing) could never be evaluated, so it is refused here, where
	// `policy check` shows it, rather than making a control unknown on
	// every device. Other errors (a payload field missing) are for real
	// evidence to settle.
	if _, err := prog.eval(emptyVars(k)); err != nil && strings.Contains(err.Error(), "cost limit") {
		return nil, fmt.Errorf("expression exceeds the evaluation cost limit (%d) even on a device with no data: %s", MaxExpressionCost, src)
	}
	return prog, nil
}

// emptyVars is an activation of kind k with every variable empty.
func emptyVars(k exprKind) map[string]any {
	switch k {
	case groupExpr:
		return map[string]any{"device": &groupDevice{}}
	case scopeExpr:
		return map[string]any{"device": &DeviceFacts{Groups: []string{}}}
	default:
		return map[string]any{"device": &DeviceFacts{Groups: []string{}}, "payload": map[string]any{},
			"observation": &celObservation{}, "now": time.Unix(0, 0).UTC()}
	}
}

// eval runs a program; any failure (including a panic in a CEL function,
// which must not take the server down) is an error.
func (p *program) eval(vars map[string]any) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("expression panicked: %v", r)
		}
	}()
	out, _, err := p.prog.Eval(vars)
	if err != nil {
		return false, err
	}
	b, isBool := out.Value().(bool)
	if !isBool {
		return false, fmt.Errorf("expression returned %v, not a bool", out.Type())
	}
	return b, nil
}

// groupsReferenced returns the group names an expression tests with
// 'name' in device.groups, so Parse can refuse a name no group defines.
func groupsReferenced(src string) []string {
	e, err := envs()
	if err != nil {
		return nil
	}
	a, iss := e[scopeExpr].Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil
	}
	var names []string
	ast.PreOrderVisit(ast.NavigateAST(a.NativeRep()), ast.NewExprVisitor(func(x ast.Expr) {
		if x.Kind() != ast.CallKind {
			return
		}
		call := x.AsCall()
		if call.FunctionName() != operators.In || len(call.Args()) != 2 {
			return
		}
		lhs, rhs := call.Args()[0], call.Args()[1]
		if lhs.Kind() != ast.LiteralKind || rhs.Kind() != ast.SelectKind || rhs.AsSelect().FieldName() != "groups" {
			return
		}
		if s, ok := lhs.AsLiteral().Value().(string); ok {
			names = append(names, s)
		}
	}))
	return names
}

// compiledGroup is one named group.
type compiledGroup struct {
	name string
	prog *program
}

// compileGroups compiles a policy's groups in name order.
func compileGroups(groups map[string]string) ([]compiledGroup, []error) {
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []compiledGroup
	var errs []error
	for _, n := range names {
		if !validGroupName.MatchString(n) {
			errs = append(errs, fmt.Errorf("group %q: name must be 1-64 letters, digits, '-', '_' or '.'", n))
			continue
		}
		p, err := compileExpr(groupExpr, groups[n])
		if err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", n, err))
			continue
		}
		out = append(out, compiledGroup{name: n, prog: p})
	}
	return out, errs
}

var validGroupName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// GroupsOf returns the device facts with Groups set to the caller's groups
// plus every policy group whose expression matches, sorted. An error names
// the group whose expression failed; the other groups are still computed.
func (p *Policy) GroupsOf(d *DeviceFacts) (*DeviceFacts, error) {
	groups := p.groups
	var errs []error
	if groups == nil && len(p.Groups) > 0 {
		groups, errs = compileGroups(p.Groups)
	}
	out := &DeviceFacts{}
	if d != nil {
		*out = *d
		out.Groups = slices.Clone(d.Groups)
	}
	vars := map[string]any{"device": &groupDevice{OS: out.OS, Hostname: out.Hostname, OSVersion: out.OSVersion}}
	for _, g := range groups {
		ok, err := g.prog.eval(vars)
		if err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", g.name, err))
			continue
		}
		if ok && !slices.Contains(out.Groups, g.name) {
			out.Groups = append(out.Groups, g.name)
		}
	}
	sort.Strings(out.Groups)
	if out.Groups == nil {
		out.Groups = []string{}
	}
	return out, errors.Join(errs...)
}

// celParams are the params of the "cel" check: a customer-defined control
// over one collector's payload.
type celParams struct {
	Collector     string `json:"collector"`
	Pass          string `json:"pass"`
	NotApplicable string `json:"not_applicable,omitempty"`
	ReasonPass    string `json:"reason_pass,omitempty"`
	ReasonFail    string `json:"reason_fail,omitempty"`
	ReasonNA      string `json:"reason_not_applicable,omitempty"`
}

// knownCollectors are the collectors a cel check may judge (those the
// evidence contract knows): a typo would otherwise leave the control
// unknown forever ("no evidence received yet").
var knownCollectors = evidence.Collectors()

// newCELCheck builds the "cel" check. Its errors name the failing param
// ("pass: ERROR: <input>:1:9: ...").
func newCELCheck(raw json.RawMessage) (evaluator, error) {
	var p celParams
	if err := strictParams(raw, &p); err != nil {
		return nil, err
	}
	if !slices.Contains(knownCollectors, p.Collector) {
		return nil, fmt.Errorf("collector %q is not one of %s", p.Collector, strings.Join(knownCollectors, ", "))
	}
	if p.Pass == "" {
		return nil, errors.New("pass: an expression is required")
	}
	pass, err := compileExpr(checkExpr, p.Pass)
	if err != nil {
		return nil, fmt.Errorf("pass: %w", err)
	}
	var na *program
	if p.NotApplicable != "" {
		if na, err = compileExpr(checkExpr, p.NotApplicable); err != nil {
			return nil, fmt.Errorf("not_applicable: %w", err)
		}
	}
	return func(in Input) Result {
		payload, o, r, ok := observed[any](in, p.Collector)
		if !ok {
			return r
		}
		dev := in.Device
		if dev == nil {
			dev = &DeviceFacts{Groups: []string{}}
		}
		vars := map[string]any{
			"payload": payload,
			"device":  dev,
			"observation": &celObservation{Collector: o.Collector, Seq: o.Seq, CollectedAt: o.CollectedAt.UTC(),
				Status: o.Status},
			"now": in.Now.UTC(),
		}
		facts := map[string]any{"pass": p.Pass}
		if na != nil {
			facts["not_applicable"] = p.NotApplicable
			yes, err := na.eval(vars)
			if err != nil {
				return decided(o, store.Unknown, "not_applicable expression failed: "+err.Error(), facts)
			}
			if yes {
				return decided(o, store.NotApplicable, orDefault(p.ReasonNA, "not applicable: "+p.NotApplicable), facts)
			}
		}
		yes, err := pass.eval(vars)
		switch {
		case err != nil:
			return decided(o, store.Unknown, "pass expression failed: "+err.Error(), facts)
		case yes:
			return decided(o, store.Pass, orDefault(p.ReasonPass, "true: "+p.Pass), facts)
		default:
			return decided(o, store.Fail, orDefault(p.ReasonFail, "false: "+p.Pass), facts)
		}
	}, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
