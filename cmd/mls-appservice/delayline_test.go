package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// delayLine stands between the homeserver and a service's appservice
// endpoint like a slow network: each transaction is acknowledged at once
// and reaches the service delay later, in order, retried until the
// service accepts it. Every other request (user queries, pings) passes
// straight through. Acknowledging at once matters: were the transaction
// held, Synapse would batch the events that arrive meanwhile into the
// next one, and the service would see them together instead of late.
//
// drop, if set, takes events out of each transaction before it is
// forwarded: the homeserver never delivers them, as Synapse does with a
// transaction it creates while it counts the appservice as down after
// its recoverer last looked (groups.queueOwnJoin).
type delayLine struct {
	drop    func(event json.RawMessage) bool
	dropped atomic.Int64
	target  *url.URL
	queue   chan delayedTxn
	ctx     context.Context
	addr    string
}

type delayedTxn struct {
	at     time.Time
	method string
	uri    string
	header http.Header
	body   []byte
}

// startDelayLine listens on a free port and forwards to target; it stops
// when t ends. Its address is d.addr.
func startDelayLine(t testing.TB, delay time.Duration, drop func(json.RawMessage) bool, target string) *delayLine {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &delayLine{drop: drop, target: u, queue: make(chan delayedTxn, 10000), ctx: ctx}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/transactions/") {
			proxy.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.queue <- delayedTxn{at: time.Now().Add(delay), method: r.Method, uri: r.URL.RequestURI(), header: r.Header.Clone(),
			body: d.filter(body)}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	})}
	go func() { _ = srv.Serve(ln) }()
	go d.forward()
	t.Cleanup(func() { cancel(); _ = srv.Close() })
	d.addr = "http://" + ln.Addr().String()
	return d
}

// filter returns body without the events drop picks; a body it cannot
// read goes as it came (the service refuses it, as it would Synapse's).
func (d *delayLine) filter(body []byte) []byte {
	if d.drop == nil {
		return body
	}
	var txn map[string]json.RawMessage
	var events []json.RawMessage
	if json.Unmarshal(body, &txn) != nil || json.Unmarshal(txn["events"], &events) != nil {
		return body
	}
	kept := events[:0]
	for _, ev := range events {
		if d.drop(ev) {
			d.dropped.Add(1)
			continue
		}
		kept = append(kept, ev)
	}
	if len(kept) == len(events) {
		return body
	}
	txn["events"], _ = json.Marshal(kept)
	out, err := json.Marshal(txn)
	if err != nil {
		return body
	}
	return out
}

func (d *delayLine) forward() {
	for {
		var txn delayedTxn
		select {
		case <-d.ctx.Done():
			return
		case txn = <-d.queue:
		}
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(time.Until(txn.at)):
		}
		for d.send(txn) != nil {
			select {
			case <-d.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func (d *delayLine) send(txn delayedTxn) error {
	req, err := http.NewRequestWithContext(d.ctx, txn.method, d.target.Scheme+"://"+d.target.Host+txn.uri, bytes.NewReader(txn.body))
	if err != nil {
		return err
	}
	req.Header = txn.header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d", txn.method, txn.uri, resp.StatusCode)
	}
	return nil
}

// pointRegistration makes the registration at path send the homeserver's
// requests to addr.
func pointRegistration(t testing.TB, path, addr string) {
	t.Helper()
	editRegistration(t, path, func(reg map[string]any) { reg["url"] = addr })
}

// editRegistration rewrites the registration file at path through edit.
func editRegistration(t testing.TB, path string, edit func(reg map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var reg map[string]any
	if err := yaml.Unmarshal(data, &reg); err != nil {
		t.Fatal(err)
	}
	edit(reg)
	if data, err = yaml.Marshal(reg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
