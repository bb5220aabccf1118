// Package httpstatus records the status code a handler answered with, for
// the request logs and metrics of the bot API and the client-server
// façade, which wrap every route in it.
package httpstatus

import "net/http"

// Writer is an http.ResponseWriter that remembers the first status it
// sent: 0 until it sent one, 200 if the body came without WriteHeader.
// Unwrap lets http.ResponseController reach the writer beneath (to flush
// a stream of server-sent events).
type Writer struct {
	http.ResponseWriter
	Status int
}

func (w *Writer) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *Writer) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the writer beneath.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
