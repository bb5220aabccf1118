package matrix

import (
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/database"
)

func TestFillPutsEachResultIntoItsField(t *testing.T) {
	tests := []struct {
		name    string
		content string
		deps    []database.Dependency
		want    string
	}{
		{"no field", `{"a": 1}`, []database.Dependency{{Seq: 1, Result: "$e"}}, `{"a": 1}`},
		{"top level", `{"a":1}`, []database.Dependency{{Seq: 1, FillField: "commit_event", Result: "$e"}},
			`{"a":1,"commit_event":"$e"}`},
		{"nested, replacing", `{"ciphertext_file":{"url":"","v":"v2"},"x":[1]}`,
			[]database.Dependency{{Seq: 1, FillField: "ciphertext_file.url", Result: "mxc://hs/m"}},
			`{"ciphertext_file":{"url":"mxc://hs/m","v":"v2"},"x":[1]}`},
		{"nested, created", `{}`, []database.Dependency{{Seq: 1, FillField: "a.b.c", Result: "r"}}, `{"a":{"b":{"c":"r"}}}`},
		{"nested under null", `{"a":null}`, []database.Dependency{{Seq: 1, FillField: "a.b", Result: "r"}}, `{"a":{"b":"r"}}`},
		{"two results", `{"ciphertext_file":{"url":""}}`, []database.Dependency{
			{Seq: 1, FillField: "commit_event", Result: "$c"},
			{Seq: 2, FillField: "ciphertext_file.url", Result: "mxc://hs/w"}},
			`{"ciphertext_file":{"url":"mxc://hs/w"},"commit_event":"$c"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &database.OutgoingEvent{TxnID: "t", Content: []byte(tt.content)}
			ev.After, ev.FillField, ev.AfterResult = tt.deps[0].Seq, tt.deps[0].FillField, tt.deps[0].Result
			ev.AlsoAfter = tt.deps[1:]
			got, err := fill(ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFillRefusesWhatItCannotFill(t *testing.T) {
	for _, tt := range []struct {
		name, content, field, result string
	}{
		{"not an object", `[1]`, "a", "r"},
		{"not JSON", `{"a":`, "a", "r"},
		{"through a string", `{"a":"s"}`, "a.b", "r"},
		{"through an array", `{"a":[{}]}`, "a.b", "r"},
		{"no result", `{}`, "a", ""},
		{"bad path", `{}`, "a..b", "r"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := &database.OutgoingEvent{TxnID: "t", Content: []byte(tt.content), After: 1, FillField: tt.field, AfterResult: tt.result}
			if _, err := fill(ev); !errors.Is(err, errBadContent) || !isPermanent(err) {
				t.Fatalf("error %v, want a permanent errBadContent", err)
			}
		})
	}
}
