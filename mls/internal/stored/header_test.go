package stored

import (
	"errors"
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
