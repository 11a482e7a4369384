package diskencryption

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// This file is a small decoder for Apple XML property lists (the output of
// `diskutil ... -plist`, `system_profiler -xml`, `defaults export`). It
// knows only the XML format (plist(5), DTD PropertyList-1.0), not the
// binary one, and decodes into plain Go values:
//
//	dict    map[string]any
//	array   []any
//	string  string
//	integer int64 (uint64 when it does not fit)
//	real    float64
//	true/false bool
//	data    []byte
//	date    time.Time
//
// It has no dependency on this package and can move to a shared package
// when a second collector needs it.

// maxPlistDepth bounds nesting so a hostile or corrupt document cannot
// exhaust the stack.
const maxPlistDepth = 64

// parsePlist decodes an XML property list. The document must hold exactly
// one <plist> element with one value.
func parsePlist(b []byte) (any, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil, errors.New("plist: no <plist> element")
		}
		if err != nil {
			return nil, fmt.Errorf("plist: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue // prolog, doctype, comments, whitespace
		}
		if se.Name.Local != "plist" {
			return nil, fmt.Errorf("plist: root element is <%s>, want <plist>", se.Name.Local)
		}
		v, end, err := plistValue(d, 0)
		if err != nil {
			return nil, err
		}
		if end {
			return nil, errors.New("plist: empty <plist>")
		}
		if _, ok := v.(plistKey); ok {
			return nil, errors.New("plist: <key> outside a dict")
		}
		// The next element must close </plist>.
		if err := plistExpectEnd(d, "plist"); err != nil {
			return nil, err
		}
		return v, nil
	}
}

// plistValue reads the next value element. end is true when the enclosing
// element closed instead (an empty array or dict body).
func plistValue(d *xml.Decoder, depth int) (v any, end bool, err error) {
	if depth > maxPlistDepth {
		return nil, false, errors.New("plist: nested too deeply")
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, false, plistEOF(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil, true, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, false, fmt.Errorf("plist: unexpected text %.40q", t)
			}
		case xml.StartElement:
			v, err := plistElement(d, t.Name.Local, depth)
			return v, false, err
		}
	}
}

func plistElement(d *xml.Decoder, name string, depth int) (any, error) {
	switch name {
	case "dict":
		m := map[string]any{}
		for {
			k, end, err := plistValue(d, depth+1)
			if err != nil {
				return nil, err
			}
			if end {
				return m, nil
			}
			key, ok := k.(plistKey)
			if !ok {
				return nil, errors.New("plist: dict value without a <key>")
			}
			v, end, err := plistValue(d, depth+1)
			if err != nil {
				return nil, err
			}
			if end {
				return nil, fmt.Errorf("plist: key %q has no value", string(key))
			}
			if _, ok := v.(plistKey); ok {
				return nil, fmt.Errorf("plist: key %q followed by another key", string(key))
			}
			m[string(key)] = v
		}
	case "array":
		a := []any{}
		for {
			v, end, err := plistValue(d, depth+1)
			if err != nil {
				return nil, err
			}
			if end {
				return a, nil
			}
			if _, ok := v.(plistKey); ok {
				return nil, errors.New("plist: <key> inside an array")
			}
			a = append(a, v)
		}
	case "true", "false":
		if err := plistExpectEnd(d, name); err != nil {
			return nil, err
		}
		return name == "true", nil
	}
	s, err := plistText(d, name)
	if err != nil {
		return nil, err
	}
	switch name {
	case "key":
		return plistKey(s), nil
	case "string":
		return s, nil
	case "integer":
		s = strings.TrimSpace(s)
		if n, err := strconv.ParseInt(s, 0, 64); err == nil {
			return n, nil
		}
		if n, err := strconv.ParseUint(s, 0, 64); err == nil {
			return n, nil
		}
		return nil, fmt.Errorf("plist: bad integer %.40q", s)
	case "real":
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("plist: bad real %.40q", s)
		}
		return f, nil
	case "data":
		clean := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, s)
		b, err := base64.StdEncoding.DecodeString(clean)
		if err != nil {
			return nil, fmt.Errorf("plist: bad data: %w", err)
		}
		return b, nil
	case "date":
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("plist: bad date %.40q", s)
		}
		return t, nil
	}
	return nil, fmt.Errorf("plist: unknown element <%s>", name)
}

// plistKey marks a <key> so a dict can tell keys from string values.
type plistKey string

// plistText reads the character data of a leaf element up to its end tag.
func plistText(d *xml.Decoder, name string) (string, error) {
	var sb strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return "", plistEOF(err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			sb.Write(t)
		case xml.EndElement:
			return sb.String(), nil
		case xml.StartElement:
			return "", fmt.Errorf("plist: <%s> inside <%s>", t.Name.Local, name)
		}
	}
}

// plistExpectEnd skips whitespace up to the end tag of name.
func plistExpectEnd(d *xml.Decoder, name string) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return plistEOF(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("plist: unexpected text in <%s>", name)
			}
		case xml.StartElement:
			return fmt.Errorf("plist: unexpected <%s> in <%s>", t.Name.Local, name)
		}
	}
}

func plistEOF(err error) error {
	if err == io.EOF {
		return errors.New("plist: truncated document")
	}
	return fmt.Errorf("plist: %w", err)
}

// Typed accessors for decoded values. Each returns the zero value and false
// when the key is missing or holds another type.

func plistDict(v any) (map[string]any, bool) { m, ok := v.(map[string]any); return m, ok }

func plistString(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func plistBool(m map[string]any, k string) (bool, bool) { b, ok := m[k].(bool); return b, ok }

func plistArray(m map[string]any, k string) []any { a, _ := m[k].([]any); return a }

func plistStrings(m map[string]any, k string) []string {
	var out []string
	for _, v := range plistArray(m, k) {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
