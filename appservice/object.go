package appservice

import (
	"bytes"
	"encoding/json"
	"errors"
)

// A transaction body is checked and split into its top-level members in
// one pass (splitObject), not decoded with json.Unmarshal into a struct of
// json.RawMessage: that checks the whole body, then walks it again to find
// each member's end, and copies every member. In a room of 10,000 of our
// devices each transaction carries their key counts twice (Synapse sends
// the section under two names), a megabyte each, and those three passes
// were a fifth of the service's CPU. Each member is then decoded as
// before, from a sub-slice of the body.

// member is one member of a JSON object: its key, unescaped, and its
// value as it stands in the input (a sub-slice, not a copy).
type member struct {
	key   string
	value []byte
}

// maxDepth is encoding/json's limit on nesting: json.Valid refuses deeper
// input, and so does splitObject.
const maxDepth = 10000

var (
	errNotJSON   = errors.New("not valid JSON")
	errNotObject = errors.New("top level is not an object")
)

// splitObject checks that body is valid JSON, exactly as json.Valid does
// (strings are not checked for UTF-8; their escapes and control
// characters are), and returns the members of its top-level object in
// order, repeated keys included. It fails with errNotJSON, or with
// errNotObject for valid JSON of another kind.
func splitObject(body []byte) ([]member, error) {
	s := &jsonScan{b: body}
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		if s.value(0) && s.end() {
			return nil, errNotObject
		}
		return nil, errNotJSON
	}
	s.i++
	var members []member
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		if !s.end() {
			return nil, errNotJSON
		}
		return members, nil
	}
	for {
		s.space()
		start := s.i
		if !s.str() {
			return nil, errNotJSON
		}
		key, err := unquote(s.b[start:s.i])
		if err != nil {
			return nil, errNotJSON
		}
		if !s.expect(':') {
			return nil, errNotJSON
		}
		s.space()
		start = s.i
		if !s.value(1) {
			return nil, errNotJSON
		}
		members = append(members, member{key: key, value: s.b[start:s.i]})
		s.space()
		if s.i >= len(s.b) {
			return nil, errNotJSON
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			if !s.end() {
				return nil, errNotJSON
			}
			return members, nil
		default:
			return nil, errNotJSON
		}
	}
}

// unquote returns the text of a valid JSON string (quotes included):
// as it stands when it has no escapes, else as json.Unmarshal reads it.
func unquote(quoted []byte) (string, error) {
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), nil
	}
	var out string
	err := json.Unmarshal(quoted, &out)
	return out, err
}

// jsonScan checks JSON text. Its methods report whether what they read
// was valid, leaving i after it.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// expect consumes c after any space.
func (s *jsonScan) expect(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only space follows.
func (s *jsonScan) end() bool {
	s.space()
	return s.i == len(s.b)
}

// value reads one value at nesting depth depth (the containers already
// open around it). Containers are tracked on a stack of their opening
// bytes rather than by recursion: a body may nest 10,000 deep.
func (s *jsonScan) value(depth int) bool {
	var open []byte
	for {
		// A value starts here.
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch c := s.b[s.i]; {
		case c == '{' || c == '[':
			if depth+len(open)+1 > maxDepth {
				return false
			}
			s.i++
			s.space()
			if s.i < len(s.b) && s.b[s.i] == c+2 { // '}' is '{'+2, ']' is '['+2
				s.i++
				break
			}
			open = append(open, c)
			if c == '{' && !s.key() {
				return false
			}
			continue
		case c == '"':
			if !s.str() {
				return false
			}
		case c == '-' || c >= '0' && c <= '9':
			if !s.number() {
				return false
			}
		case c == 't':
			if !s.literal("true") {
				return false
			}
		case c == 'f':
			if !s.literal("false") {
				return false
			}
		case c == 'n':
			if !s.literal("null") {
				return false
			}
		default:
			return false
		}
		// A value ended: close what it ends, until another value is due.
		for {
			if len(open) == 0 {
				return true
			}
			s.space()
			if s.i >= len(s.b) {
				return false
			}
			c, top := s.b[s.i], open[len(open)-1]
			if c == top+2 {
				s.i++
				open = open[:len(open)-1]
				continue
			}
			if c != ',' {
				return false
			}
			s.i++
			if top == '{' && !s.key() {
				return false
			}
			break
		}
	}
}

// key reads an object's key and its colon.
func (s *jsonScan) key() bool {
	s.space()
	return s.str() && s.expect(':')
}

// str reads a string: no control characters, only JSON's escapes.
func (s *jsonScan) str() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	s.i++
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return true
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				s.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			s.i++
		}
	}
	return false
}

// number reads -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *jsonScan) number() bool {
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i >= len(s.b):
		return false
	case s.b[s.i] == '0':
		s.i++
	case s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

// digits reads [0-9]* and returns how many.
func (s *jsonScan) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

func (s *jsonScan) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}
