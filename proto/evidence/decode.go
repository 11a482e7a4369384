package evidence

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
)

// contract is what this server knows of one collector's payloads.
type contract struct {
	// current is the newest parser version this server understands.
	current int
	// payload is today's payload type.
	payload reflect.Type
	// upgrade converts the payload of an older parser whose shape or
	// meaning differs from today's into today's type, by that parser's
	// version. Empty while every version has only added fields.
	upgrade map[int]func(raw []byte) (any, error)
}

// contracts holds every collector this server reads. A new parser version
// raises current; one that renames a field or changes a meaning also
// registers an upgrade for each older version.
var contracts = map[string]contract{
	Antimalware:    {current: AntimalwareParserVersion, payload: reflect.TypeFor[AntimalwarePayload]()},
	DiskEncryption: {current: DiskEncryptionParserVersion, payload: reflect.TypeFor[DiskEncryptionPayload]()},
	Firewall:       {current: FirewallParserVersion, payload: reflect.TypeFor[FirewallPayload]()},
	OSInfo:         {current: OSInfoParserVersion, payload: reflect.TypeFor[OSInfoPayload]()},
	Patches:        {current: PatchesParserVersion, payload: reflect.TypeFor[PatchesPayload]()},
	ScreenLock:     {current: ScreenLockParserVersion, payload: reflect.TypeFor[ScreenLockPayload]()},
	SecureBoot:     {current: SecureBootParserVersion, payload: reflect.TypeFor[SecureBootPayload]()},
	TPM:            {current: TPMParserVersion, payload: reflect.TypeFor[TPMPayload]()},
}

// Collectors lists the names of every collector whose payloads this server
// reads, sorted.
func Collectors() []string {
	out := make([]string, 0, len(contracts))
	for n := range contracts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CurrentVersion is the newest parser version of collector this server
// understands (today's agent sends it); false for a collector it does not
// know.
func CurrentVersion(collector string) (int, bool) {
	c, ok := contracts[collector]
	return c.current, ok
}

// NewerError is Decode's error for a payload written by a parser newer than
// this server understands. Its text is the reason a control reports.
type NewerError struct {
	Collector string
	Version   int // the payload's parser version
	Known     int // the newest this server understands
}

func (e *NewerError) Error() string {
	return fmt.Sprintf("%s payload from parser v%d, newer than this server understands (v%d): upgrade the server",
		e.Collector, e.Version, e.Known)
}

// Decode reads the payload a collector's parser of the given version wrote
// into T, which is the collector's payload type (FirewallPayload for
// Firewall) or any (JSON values, for expressions).
//
// The compatibility rule, keyed by (collector, parser version):
//
//   - A server decodes every parser version from 1 up to the newest it
//     knows into today's type. Version 0 (not stated) reads as 1.
//   - Payload types only ever add fields. A field an older parser did not
//     send decodes as its zero value, and a check that needs it judges by
//     the version (an old firewall payload has no verdict: the check says
//     so instead of inventing one).
//   - Renaming a field or changing what a field means takes a new parser
//     version, with a conversion into today's type registered for every
//     older version whose payloads read differently.
//   - A payload from a parser newer than the server knows is stored as
//     received, never rejected, and Decode returns a *NewerError: its
//     control scores unknown with the reason "<collector> payload from
//     parser vN, newer than this server understands (vM): upgrade the
//     server". Nothing is lost: a server that understands the version
//     scores the stored payload at its next evaluation.
//
// Other errors: a collector the server does not know, a T that is not the
// collector's payload type, or JSON that does not fit it.
func Decode[T any](collector string, version int, raw []byte) (T, error) {
	var out T
	c, ok := contracts[collector]
	if !ok {
		return out, fmt.Errorf("no evidence contract for collector %q", collector)
	}
	want := reflect.TypeFor[T]()
	if want.Kind() != reflect.Interface && want != c.payload {
		return out, fmt.Errorf("%s payloads decode into %s, not %s", collector, c.payload, want)
	}
	v := max(version, 1)
	if v > c.current {
		return out, &NewerError{Collector: collector, Version: version, Known: c.current}
	}
	up := c.upgrade[v]
	if up == nil {
		err := json.Unmarshal(raw, &out)
		return out, err
	}
	p, err := up(raw)
	if err != nil {
		return out, err
	}
	if t, ok := p.(T); ok && want.Kind() != reflect.Interface {
		return t, nil
	}
	// T is any: the converted payload as JSON values, as if today's parser
	// had sent it.
	b, err := json.Marshal(p)
	if err != nil {
		return out, err
	}
	err = json.Unmarshal(b, &out)
	return out, err
}
