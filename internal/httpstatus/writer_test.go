package httpstatus

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriter(t *testing.T) {
	for _, c := range []struct {
		name string
		do   func(w http.ResponseWriter)
		want int
	}{
		{"nothing", func(http.ResponseWriter) {}, 0},
		{"body only", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) }, http.StatusOK},
		{"header", func(w http.ResponseWriter) { w.WriteHeader(http.StatusTeapot) }, http.StatusTeapot},
		{"first header wins", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusNotFound)
			w.WriteHeader(http.StatusOK)
		}, http.StatusNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			w := &Writer{ResponseWriter: rec}
			c.do(w)
			if w.Status != c.want {
				t.Errorf("Status = %d, want %d", w.Status, c.want)
			}
			if http.NewResponseController(w).Flush() != nil {
				t.Error("cannot flush through Writer")
			}
		})
	}
}
