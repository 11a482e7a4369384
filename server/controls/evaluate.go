package controls

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/collectors"
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
}

// Evidence is what an auditor sees next to a status.
type Evidence struct {
	Collector   string              `json:"collector"`
	Seq         uint64              `json:"seq"`
	CollectedAt time.Time           `json:"collected_at"`
	Facts       any                 `json:"facts,omitempty"`
	Sources     []collectors.Source `json:"sources,omitempty"`
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
		ev, _ = json.Marshal(e.Evidence)
	}
	return store.ControlState{ControlID: e.Control.ID, Status: e.Status, Reason: e.Reason, EvidenceSeq: e.EvidenceSeq, Evidence: ev}
}

// Evaluate runs every control of p on in. Evidence older than a control's
// max_age makes it unknown: a Type II report must not count stale evidence
// as compliance.
func (p *Policy) Evaluate(in Input) []Evaluation {
	out := make([]Evaluation, 0, len(p.Controls))
	for _, c := range p.Controls {
		eval, err := checks[c.Check](c.Params)
		var r Result
		if err != nil {
			r = Result{Status: store.Unknown, Reason: "invalid policy params: " + err.Error()}
		} else {
			ci := in
			if prev, ok := in.Current[c.ID]; ok {
				ci.prev = &prev
			}
			r = eval(ci)
		}
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
		out = append(out, Evaluation{Control: c, Result: r})
	}
	return out
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
	"firewall":         noParams(checkFirewall),
	"secure_boot":      noParams(checkSecureBoot),
	"tpm":              newTPM,
	"agent_fresh":      noParams(checkAgentFresh),
	"antimalware":      newAntimalware,
	"screen_lock":      newScreenLock,
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

// observed fetches and decodes the latest observation of a collector. When it
// cannot decide (missing, failed, unsupported, undecodable) it returns the
// Result to report and ok=false.
func observed[T any](in Input, collector string) (T, store.Observation, Result, bool) {
	var payload T
	o, ok := in.Latest[collector]
	if !ok {
		return payload, o, Result{Status: store.Unknown, Reason: "no " + collector + " evidence received yet"}, false
	}
	base := Result{Status: store.Unknown, EvidenceSeq: o.Seq, EvidenceAt: o.CollectedAt, Evidence: evidenceOf(o, nil)}
	switch o.Status {
	case string(collectors.StatusOK):
	case string(collectors.StatusUnsupported):
		base.Reason = collector + " collection is not supported on this OS yet: " + o.Error
		return payload, o, base, false
	default:
		base.Reason = collector + " collection failed: " + o.Error
		return payload, o, base, false
	}
	if err := json.Unmarshal(o.Payload, &payload); err != nil {
		base.Reason = fmt.Sprintf("%s payload (parser v%d) not understood: %v", collector, o.ParserVersion, err)
		return payload, o, base, false
	}
	return payload, o, base, true
}

func evidenceOf(o store.Observation, facts any) *Evidence {
	e := &Evidence{Collector: o.Collector, Seq: o.Seq, CollectedAt: o.CollectedAt, Facts: facts}
	_ = json.Unmarshal(o.Sources, &e.Sources)
	return e
}

func decided(o store.Observation, status, reason string, facts any) Result {
	return Result{Status: status, Reason: reason, EvidenceSeq: o.Seq, EvidenceAt: o.CollectedAt, Evidence: evidenceOf(o, facts)}
}
