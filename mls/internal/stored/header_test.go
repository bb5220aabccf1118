package stored

import (
	"errors"
	"strings"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

var errInvalid = errors.New("invalid test state")

func TestHeader(t *testing.T) {
	s, _ := suite.Lookup(suite.P384AES256GCMSHA384P384)
	var w codec.Writer
	WriteHeader(&w, 3, s.ID())
	w.Uint8(0xaa)
	good := w.Bytes()
	if len(good) != 4 || good[0] != 3 || good[1] != 0 || good[2] != 7 {
		t.Fatalf("header = %x", good)
	}
	r := codec.NewReader(good)
	if got := ReadHeader(r, "x", 3, errInvalid); got != s || r.Uint8("x.rest") != 0xaa || r.Finish("x") != nil {
		t.Fatalf("read %v, %v", got, r.Err())
	}

	for _, c := range []struct {
		name string
		data []byte
		want []error
	}{
		{"other version", []byte{2, 0, 7}, []error{errInvalid}},
		{"unknown suite", []byte{3, 0, 8}, []error{errInvalid, suite.ErrUnsupportedSuite}},
		{"truncated", []byte{3, 0}, []error{codec.ErrTruncated}},
	} {
		r := codec.NewReader(c.data)
		if got := ReadHeader(r, "x", 3, errInvalid); got != nil {
			t.Errorf("%s: suite %v", c.name, got)
		}
		for _, want := range c.want {
			if !errors.Is(r.Err(), want) {
				t.Errorf("%s: %v, want %v", c.name, r.Err(), want)
			}
		}
	}
}

func TestHeaderVersions(t *testing.T) {
	s, _ := suite.Lookup(suite.P384AES256GCMSHA384P384)
	for _, v := range []uint8{1, 2} {
		var w codec.Writer
		WriteHeader(&w, v, s.ID())
		r := codec.NewReader(w.Bytes())
		got, gs := ReadHeaderVersions(r, "x", errInvalid, 1, 2)
		if got != v || gs != s || r.Finish("x") != nil {
			t.Errorf("version %d: read %d, %v, %v", v, got, gs, r.Err())
		}
	}

	for _, c := range []struct {
		name string
		data []byte
		want []error
		msg  string
	}{
		{"other version", []byte{3, 0, 7}, []error{errInvalid}, "format version 3, want 1 or 2"},
		{"unknown suite", []byte{2, 0, 8}, []error{errInvalid, suite.ErrUnsupportedSuite}, ""},
		{"truncated", []byte{1}, []error{codec.ErrTruncated}, ""},
	} {
		r := codec.NewReader(c.data)
		if v, got := ReadHeaderVersions(r, "x", errInvalid, 1, 2); v != 0 || got != nil {
			t.Errorf("%s: version %d, suite %v", c.name, v, got)
		}
		for _, want := range c.want {
			if !errors.Is(r.Err(), want) {
				t.Errorf("%s: %v, want %v", c.name, r.Err(), want)
			}
		}
		if c.msg != "" && !strings.Contains(r.Err().Error(), c.msg) {
			t.Errorf("%s: %q does not say %q", c.name, r.Err(), c.msg)
		}
	}

	// ReadHeader's message for its single version is unchanged.
	r := codec.NewReader([]byte{2, 0, 7})
	ReadHeader(r, "x", 3, errInvalid)
	if want := "format version 2, want 3"; r.Err() == nil || !strings.Contains(r.Err().Error(), want) {
		t.Errorf("ReadHeader: %v, want it to say %q", r.Err(), want)
	}
}
