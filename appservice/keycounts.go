package appservice

import (
	"strconv"
)

// Synapse sends, with each transaction, the key counts of every device of
// each user the transaction concerns (MSC3202): with 100 puppets of 100
// devices each, 10,000 devices' counts, a megabyte, in most transactions.
// Decoded with encoding/json into maps, parsing them was 16 % of the
// service's CPU in a room of those 10,000 devices. The two shapes are
// small enough to scan by hand: decodeOTKCounts and decodeFallbackTypes
// give what json.Unmarshal into the same types gives (FuzzDecodeKeyCounts
// holds them to it), at a fraction of its cost, for input already found
// valid (ParseTransaction checks the whole body first, splitObject). They report false for anything else they meet, and
// the caller then decodes the section the slow, tolerant way.

// decodeOTKCounts decodes {user: {device: {algorithm: count}}}.
func decodeOTKCounts(raw []byte) (map[string]map[string]map[string]int64, bool) {
	s := &keyScanner{jsonScan: jsonScan{b: raw}}
	var out map[string]map[string]map[string]int64
	object(s, &out, func(user string) {
		var devices map[string]map[string]int64
		object(s, &devices, func(device string) {
			var algs map[string]int64
			object(s, &algs, func(alg string) { algs[alg] = s.integer() })
			devices[device] = algs
		})
		out[user] = devices
	})
	return out, s.end()
}

// decodeFallbackTypes decodes {user: {device: [algorithm]}}.
func decodeFallbackTypes(raw []byte) (map[string]map[string][]string, bool) {
	s := &keyScanner{jsonScan: jsonScan{b: raw}}
	var out map[string]map[string][]string
	object(s, &out, func(user string) {
		var devices map[string][]string
		object(s, &devices, func(device string) { devices[device] = s.strings() })
		out[user] = devices
	})
	return out, s.end()
}

// keyScanner reads valid JSON of an expected shape, over jsonScan's text
// (object.go). The first thing out of shape sets failed, and every method
// returns at once from then on: its expect, str and end stand in for
// jsonScan's, which check rather than read.
//
// Like json.Unmarshal, it takes null for an empty map, list, string or
// zero, and a repeated key's later value replaces the earlier one.
type keyScanner struct {
	jsonScan
	failed bool
}

// null consumes a null and reports whether there was one.
func (s *keyScanner) null() bool {
	s.space()
	if s.i+4 <= len(s.b) && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// expect consumes c, or fails.
func (s *keyScanner) expect(c byte) bool {
	s.space()
	if s.failed || s.i >= len(s.b) || s.b[s.i] != c {
		s.failed = true
		return false
	}
	s.i++
	return true
}

// object reads an object into *m: it makes the map (none for null) and
// calls member with each key, positioned at the key's value, which member
// must read and store.
func object[M ~map[string]V, V any](s *keyScanner, m *M, member func(key string)) {
	if s.failed || s.null() || !s.expect('{') {
		return
	}
	*m = M{}
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return
	}
	for !s.failed {
		key := s.str()
		if !s.expect(':') {
			return
		}
		member(key)
		s.space()
		if s.failed || s.i >= len(s.b) {
			s.failed = true
			return
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.failed = true
		}
	}
}

// strings reads a list of strings (nil for null).
func (s *keyScanner) strings() []string {
	if s.failed || s.null() || !s.expect('[') {
		return nil
	}
	out := []string{}
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return out
	}
	for !s.failed {
		if s.null() {
			out = append(out, "")
		} else {
			out = append(out, s.str())
		}
		s.space()
		if s.failed || s.i >= len(s.b) {
			s.failed = true
			return nil
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return out
		default:
			s.failed = true
		}
	}
	return nil
}

// str reads a string, as unquote gives it (the caller has checked the
// input is UTF-8).
func (s *keyScanner) str() string {
	if s.failed {
		return ""
	}
	s.space()
	start := s.i
	if !s.jsonScan.str() {
		s.failed = true
		return ""
	}
	out, err := unquote(s.b[start:s.i])
	if err != nil {
		s.failed = true
	}
	return out
}

// integer reads a number that is an int64, as json.Unmarshal into an
// int64 takes it (no fraction, no exponent, in range); null is 0.
func (s *keyScanner) integer() int64 {
	if s.failed || s.null() {
		return 0
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c != '-' && (c < '0' || c > '9') {
			break
		}
		s.i++
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		s.failed = true
	}
	return n
}

// end reports whether the whole input was read, in shape.
func (s *keyScanner) end() bool {
	s.space()
	return !s.failed && s.i == len(s.b)
}
