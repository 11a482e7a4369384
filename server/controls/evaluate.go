package controls

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/store"
)

// Input is what a device's evaluation sees.
type Input struct {
	Now time.Time
	// Latest is the newest observation per collector.
	Latest map[string]store.Observation
	// LastSeen is when the server last received anything from the device.
	LastSeen *time.Time
	// History returns up to limit observations of a collector, newest
	// first. It may be nil (then checks use Latest only).
	History func(collector string, limit int) ([]store.Observation, error)
	// Current holds the open state interval of each control (by id), when
	// known: checks that track a duration carry it forward from there
	// instead of rescanning history.
	Current map[string]store.ControlState
	// TPM is the device's enrolled TPM and latest attestation; nil when
	// the caller does not know (then TPM checks use collector evidence
	// only).
	TPM *TPMEvidence
	// Device is what groups and applies_to expressions know of the device;
	// nil: empty strings and no groups. Evaluate adds the policy's
	// matching groups to Groups.
	Device *DeviceFacts

	// prev is Current[id] of the control being evaluated.
	prev *store.ControlState
}

// Result is one control's evaluation.
type Result struct {
	Status string
	Reason string
	// Observation that decided it, if any.
	EvidenceSeq uint64
	EvidenceAt  time.Time
	Evidence    *Evidence
	// InGrace is set on a fail within the control's grace period, which
	// ends at GraceUntil. The status stays fail; reports may decide not to
	// count the time as an exception.
	InGrace    bool
	GraceUntil time.Time
	// ChangesAt is a moment after the evaluation time at which the check
	// itself knows its result changes (beyond evidence going stale and
	// grace ending, which RescoreAt reads from the fields above).
	ChangesAt time.Time
}

// Evidence is what an auditor sees next to a status.
type Evidence struct {
	Collector   string            `json:"collector"`
	Seq         uint64            `json:"seq"`
	CollectedAt time.Time         `json:"collected_at"`
	Facts       any               `json:"facts,omitempty"`
	Sources     []evidence.Source `json:"sources,omitempty"`

	// sources are the observation's sources as stored (JSON, validated at
	// ingest), when Sources was not decoded from them: an evaluation
	// copies them into each control's stored evidence without decoding
	// and encoding them again, once per control and report.
	sources json.RawMessage
}

// MarshalJSON encodes e; Sources, when not decoded, as the observation
// stored them. Every control of every report stores its evidence, so the
// stored sources are copied in, not encoded again: json.Marshal would
// re-read a json.RawMessage to compact it, and read the whole result again
// to check a MarshalJSON's output.
func (e Evidence) MarshalJSON() ([]byte, error) {
	type plain Evidence
	b, err := json.Marshal(plain(e))
	if err != nil || e.Sources != nil || len(e.sources) == 0 || string(e.sources) == "null" || !json.Valid(e.sources) {
		// Sources that are not JSON (a damaged row) are left out.
		return b, err
	}
	// b is an object that ends with '}' and has no "sources" (Sources is
	// nil, and omitted when empty).
	out := make([]byte, 0, len(b)+len(`,"sources":`)+len(e.sources))
	out = append(out, b[:len(b)-1]...)
	out = append(out, `,"sources":`...)
	out = append(out, e.sources...)
	return append(out, '}'), nil
}

// Evaluation pairs a control with its result.
type Evaluation struct {
	Control Control
	Result
}

// State converts an evaluation to the stored interval form.
func (e Evaluation) State() store.ControlState {
	var ev json.RawMessage
	if e.Evidence != nil {
		// Called directly: json.Marshal would check the output again.
		ev, _ = e.Evidence.MarshalJSON()
	}
	return store.ControlState{ControlID: e.Control.ID, Status: e.Status, Reason: e.Reason, EvidenceSeq: e.EvidenceSeq, Evidence: ev}
}

// Evaluate runs every control of p on in. Evidence older than a control's
// max_age makes it unknown: a Type II report must not count stale evidence
// as compliance. A control whose applies_to is false is not_applicable; a
// failing control within its grace period is marked InGrace.
func (p *Policy) Evaluate(in Input) []Evaluation {
	out := make([]Evaluation, 0, len(p.Controls))
	dev, groupErr := p.GroupsOf(in.Device)
	in.Device = dev
	for _, c := range p.Controls {
		r, scoped := c.inScope(in, groupErr)
		if scoped {
			r = c.evaluate(in)
			c.applyGrace(&r, in)
		}
		out = append(out, Evaluation{Control: c, Result: r})
	}
	return out
}

// MaxRescoreGap bounds RescoreAt: every device is evaluated again at least
// this often, whatever its evidence says, so a check whose result moves
// with time in a way RescoreAt does not know is late by a day at most.
const MaxRescoreGap = 24 * time.Hour

// RescoreAt is when evals, made as of at, can next change with time alone:
// the earliest moment a control's evidence becomes older than its max_age,
// or a control's grace period ends; at most MaxRescoreGap after at. Every
// other input of a check is the evidence, which changes only with a new
// report (scored as it arrives). A CEL check may read the evaluation time
// (now): with one, the device is due at every rescore (at itself).
func RescoreAt(evals []Evaluation, at time.Time) time.Time {
	next := at.Add(MaxRescoreGap)
	earlier := func(t time.Time) {
		if t.After(at) && t.Before(next) {
			next = t
		}
	}
	for _, e := range evals {
		if e.Control.Check == "cel" {
			return at
		}
		if e.InGrace {
			earlier(e.GraceUntil)
		}
		earlier(e.ChangesAt)
		if !e.EvidenceAt.IsZero() && e.Control.MaxAge.Duration > 0 {
			// Stale once its age is over max_age: just after the deadline.
			earlier(e.EvidenceAt.Add(e.Control.MaxAge.Duration + time.Nanosecond))
		}
	}
	return next
}

// inScope evaluates applies_to. When it returns false, the Result says why.
func (c Control) inScope(in Input, groupErr error) (Result, bool) {
	if c.AppliesTo == "" {
		return Result{}, true
	}
	if groupErr != nil {
		return Result{Status: store.Unknown, Reason: "device groups could not be computed: " + groupErr.Error()}, false
	}
	prog := c.scope
	if prog == nil { // a Control not made by Parse
		var err error
		if prog, err = compileExpr(scopeExpr, c.AppliesTo); err != nil {
			return Result{Status: store.Unknown, Reason: "invalid applies_to: " + err.Error()}, false
		}
	}
	ok, err := prog.eval(map[string]any{"device": in.Device})
	switch {
	case err != nil:
		return Result{Status: store.Unknown, Reason: "applies_to failed: " + err.Error()}, false
	case !ok:
		return Result{Status: store.NotApplicable, Reason: "out of scope: " + c.AppliesTo}, false
	}
	return Result{}, true
}

// evaluate runs the control's check, then judges the age of its evidence.
func (c Control) evaluate(in Input) Result {
	eval := c.eval
	if eval == nil { // a Control not made by Parse
		mk := checks[c.Check]
		if mk == nil {
			return Result{Status: store.Unknown, Reason: fmt.Sprintf("invalid policy: unknown check %q", c.Check)}
		}
		var err error
		if eval, err = mk(c.Params); err != nil {
			return Result{Status: store.Unknown, Reason: "invalid policy params: " + err.Error()}
		}
	}
	ci := in
	if prev, ok := in.Current[c.ID]; ok {
		ci.prev = &prev
	}
	r := eval(ci)
	if c.Check == "agent_fresh" && r.Status == store.Pass {
		if age := in.Now.Sub(r.EvidenceAt); age > c.MaxAge.Duration {
			r.Status = store.Fail
			r.Reason = fmt.Sprintf("no report for %s (window %s); last report %s", roundAge(age), c.MaxAge.Duration,
				r.EvidenceAt.UTC().Format(time.RFC3339))
		}
	} else if !r.EvidenceAt.IsZero() {
		if age := in.Now.Sub(r.EvidenceAt); age > c.MaxAge.Duration {
			r.Status = store.Unknown
			r.Reason = fmt.Sprintf("no fresh evidence: newest is %s old (window %s); it said: %s",
				roundAge(age), c.MaxAge.Duration, r.Reason)
		}
	}
	return r
}

// applyGrace marks a fail within the control's grace period. The control
// has been failing since its open fail interval began (Input.Current), or
// since now.
func (c Control) applyGrace(r *Result, in Input) {
	if r.Status != store.Fail || c.Grace.Duration <= 0 {
		return
	}
	failSince := in.Now
	if prev, ok := in.Current[c.ID]; ok && prev.Status == store.Fail && prev.Until == nil && !prev.Since.After(in.Now) {
		failSince = prev.Since
	}
	inGrace, until := c.GraceFor(failSince, in.Now)
	if inGrace {
		r.InGrace, r.GraceUntil = true, until
		r.Reason += fmt.Sprintf(" (within the %s grace period until %s)", shortDuration(c.Grace.Duration), until.UTC().Format(time.RFC3339))
	}
}

// GraceFor says whether a control failing since failSince is within its
// grace period at now, and when that period ends (failSince plus grace).
// Without a grace period it returns false and the zero time; after the
// period it returns false and the end of the period.
func (c Control) GraceFor(failSince, now time.Time) (inGrace bool, until time.Time) {
	if c.Grace.Duration <= 0 {
		return false, time.Time{}
	}
	until = failSince.Add(c.Grace.Duration)
	return now.Before(until), until
}

// shortDuration spells 72h as "72h", not "72h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func roundAge(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}

type evaluator func(Input) Result

// checks maps a policy "check" name to a constructor that validates params.
var checks = map[string]func(json.RawMessage) (evaluator, error){
	"disk_encryption":  noParams(checkDiskEncryption),
	"security_patches": newSecurityPatches,
	"auto_updates":     noParams(checkAutoUpdates),
	"firewall":         newFirewall,
	"secure_boot":      noParams(checkSecureBoot),
	"tpm":              newTPM,
	"agent_fresh":      noParams(checkAgentFresh),
	"antimalware":      newAntimalware,
	"screen_lock":      newScreenLock,
	"cel":              newCELCheck,
}

func noParams(e evaluator) func(json.RawMessage) (evaluator, error) {
	return func(p json.RawMessage) (evaluator, error) {
		if len(p) > 0 && string(p) != "null" && string(p) != "{}" {
			return nil, fmt.Errorf("this check takes no params")
		}
		return e, nil
	}
}

func strictParams(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// observed fetches and decodes the latest observation of a collector through
// the evidence contract (evidence.Decode). When it cannot decide (missing,
// failed, unsupported, from a parser newer than this server, undecodable)
// it returns the Result to report and ok=false.
func observed[T any](in Input, collector string) (T, store.Observation, Result, bool) {
	var payload T
	o, ok := in.Latest[collector]
	if !ok {
		return payload, o, Result{Status: store.Unknown, Reason: "no " + collector + " evidence received yet"}, false
	}
	base := Result{Status: store.Unknown, EvidenceSeq: o.Seq, EvidenceAt: o.CollectedAt, Evidence: evidenceOf(o, nil)}
	switch o.Status {
	case string(evidence.StatusOK):
	case string(evidence.StatusUnsupported):
		base.Reason = collector + " collection is not supported on this OS yet: " + o.Error
		return payload, o, base, false
	default:
		base.Reason = collector + " collection failed: " + o.Error
		return payload, o, base, false
	}
	payload, err := evidence.Decode[T](collector, o.ParserVersion, o.Payload)
	var newer *evidence.NewerError
	switch {
	case errors.As(err, &newer):
		base.Reason = newer.Error()
		return payload, o, base, false
	case err != nil:
		base.Reason = fmt.Sprintf("%s payload (parser v%d) not understood: %v", collector, o.ParserVersion, err)
		return payload, o, base, false
	}
	return payload, o, base, true
}

func evidenceOf(o store.Observation, facts any) *Evidence {
	return &Evidence{Collector: o.Collector, Seq: o.Seq, CollectedAt: o.CollectedAt, Facts: facts, sources: o.Sources}
}

func decided(o store.Observation, status, reason string, facts any) Result {
	return Result{Status: status, Reason: reason, EvidenceSeq: o.Seq, EvidenceAt: o.CollectedAt, Evidence: evidenceOf(o, facts)}
}
