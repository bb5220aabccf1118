package botapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"
)

// streamBatch bounds the events read from the log for one write.
const streamBatch = 500

// stream serves GET /v1/events: the bot's event log as server-sent
// events, each with its number as id, from after Last-Event-ID (or the
// after parameter; or from now without either), for ever.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, bot string) error {
	if e := checkQuery(r, "after", "puppet"); e != nil {
		return e
	}
	ctx := r.Context()
	var puppets []id.UserID
	for i, p := range r.URL.Query()["puppet"] {
		u, e := checkUserID(fmt.Sprintf("puppet[%d]", i), p)
		if e != nil {
			return e
		}
		if err := s.cfg.Registry.Check(ctx, bot, u); err != nil {
			return classify(err, fmt.Sprintf("puppet[%d]", i))
		}
		puppets = append(puppets, u)
	}
	after, from, e := resumePoint(r)
	if e != nil {
		return e
	}
	done, err := s.openStream(bot)
	if err != nil {
		return err
	}
	defer done()
	f, unsubscribe := s.hub.subscribe(bot)
	defer unsubscribe()
	// The first fan-in here, not in the feed: so that "now" and the check
	// of Last-Event-ID see every event delivered before the request.
	_, last, err := s.events.fanIn(ctx, bot)
	if err != nil {
		return err
	}
	f.advance(last)
	switch {
	case !from:
		after = last
	case after > last:
		return badField(from2field(r), "event %d is beyond the end of this bot's event log (%d)", after, last)
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: how long a client waits before reconnecting (EventSource).
	fmt.Fprintf(w, "retry: 2000\n: bot %s, after %d\n\n", bot, after)
	if err := rc.Flush(); err != nil {
		return nil
	}
	keepalive := time.NewTicker(s.cfg.Settings.Keepalive.D())
	defer keepalive.Stop()
	var buf bytes.Buffer
	for {
		top, _, changed := f.state()
		if top > after {
			events, scanned, err := s.events.read(ctx, bot, after, streamBatch, puppets)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error().Err(err).Str("bot", bot).Int64("after", after).Msg("Reading the event log for a stream failed")
				}
				return nil // the client reconnects with Last-Event-ID
			}
			buf.Reset()
			now := s.cfg.Now()
			for _, ev := range events {
				writeEvent(&buf, ev)
				s.cfg.Metrics.Lag.WithLabelValues("sse").Observe(now.Sub(ev.DeliveredAt).Seconds())
			}
			if buf.Len() > 0 {
				if _, err := w.Write(buf.Bytes()); err != nil {
					return nil
				}
				if err := rc.Flush(); err != nil {
					return nil
				}
				s.cfg.Metrics.Streamed.Add(float64(len(events)))
			}
			after = scanned
			if after < top {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
	}
}

// writeEvent writes one server-sent event: id, event (the kind) and the
// event as one line of JSON.
func writeEvent(buf *bytes.Buffer, ev Event) {
	data, _ := json.Marshal(ev) // Event holds only marshalable values; Content is valid JSON
	fmt.Fprintf(buf, "id: %s\nevent: %s\ndata: %s\n\n", ev.ID, ev.Kind, data)
}

// resumePoint reads where a stream starts: Last-Event-ID (a reconnecting
// EventSource sends it) or the after parameter. from is false if neither
// was given.
func resumePoint(r *http.Request) (after int64, from bool, e *Error) {
	field, v := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if q, ok := r.URL.Query()["after"]; ok {
		if len(q) != 1 {
			return 0, false, badField("after", "after is given more than once")
		}
		if v != "" && v != q[0] {
			return 0, false, badField("after", "after and Last-Event-ID disagree")
		}
		field, v = "after", q[0]
	}
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, false, badField(field, "%s must be an event id from this stream (a non-negative integer)", field)
	}
	return n, true, nil
}

func from2field(r *http.Request) string {
	if r.URL.Query().Has("after") {
		return "after"
	}
	return "Last-Event-ID"
}
