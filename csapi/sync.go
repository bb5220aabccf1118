package csapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// errMalformed is the answer when the homeserver's answer cannot be read.
func errMalformed(what string) *matrixError {
	return mxErr(http.StatusBadGateway, errUnknown, "the homeserver's %s answer is malformed", what)
}

// object decodes raw as a JSON object; ok is false if it is absent, null
// or not an object.
func object(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

// array decodes raw as a JSON array.
func array(raw json.RawMessage) ([]json.RawMessage, bool) {
	var a []json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &a) != nil || a == nil {
		return nil, false
	}
	return a, true
}

// set encodes v into m[key].
func set(m map[string]json.RawMessage, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m[key] = data
	return nil
}

// syncTimeline is one room's timeline in a /sync answer.
type syncTimeline struct {
	section, room string
	roomObj       map[string]json.RawMessage
	timeline      map[string]json.RawMessage
	list          *eventList
}

// rewriteSync rewrites a /sync answer: the DMLS events of joined and left
// rooms' timelines (invites carry stripped state only), and the DMLS
// to-device messages (Welcomes, which are groups' business, not the
// bot's) left out.
func rewriteSync(ctx context.Context, rw *rewriter, body []byte) ([]byte, error) {
	top, ok := object(body)
	if !ok {
		rw.metrics.Malformed.WithLabelValues("homeserver").Inc()
		return nil, errMalformed("/sync")
	}
	rooms, _ := object(top["rooms"])
	sections := map[string]map[string]json.RawMessage{}
	var timelines []*syncTimeline
	var lists []*eventList
	for _, section := range []string{"join", "leave"} {
		sec, ok := object(rooms[section])
		if !ok {
			continue
		}
		sections[section] = sec
		for roomID, raw := range sec {
			room, ok := object(raw)
			if !ok {
				continue
			}
			tl, ok := object(room["timeline"])
			if !ok {
				continue
			}
			events, ok := array(tl["events"])
			if !ok || !mentionsEncrypted(tl["events"]) {
				continue
			}
			t := &syncTimeline{section: section, room: roomID, roomObj: room, timeline: tl,
				list: &eventList{events: events, dropCommits: true}}
			timelines = append(timelines, t)
			lists = append(lists, t.list)
		}
	}
	changed := false
	if len(lists) > 0 {
		if err := rw.rewrite(ctx, lists); err != nil {
			return nil, err
		}
		for _, t := range timelines {
			if err := set(t.timeline, "events", t.list.events); err != nil {
				return nil, err
			}
			if err := set(t.roomObj, "timeline", t.timeline); err != nil {
				return nil, err
			}
			if err := set(sections[t.section], t.room, t.roomObj); err != nil {
				return nil, err
			}
		}
		for name, sec := range sections {
			if err := set(rooms, name, sec); err != nil {
				return nil, err
			}
		}
		if err := set(top, "rooms", rooms); err != nil {
			return nil, err
		}
		changed = true
	}
	if td, ok := object(top["to_device"]); ok && mentionsEncrypted(td["events"]) {
		if events, ok := array(td["events"]); ok {
			kept := events[:0:0]
			for _, ev := range events {
				if !isDMLSToDevice(ev) {
					kept = append(kept, ev)
				}
			}
			if len(kept) != len(events) {
				if err := set(td, "events", kept); err != nil {
					return nil, err
				}
				if err := set(top, "to_device", td); err != nil {
					return nil, err
				}
				changed = true
			}
		}
	}
	if !changed {
		return body, nil
	}
	return json.Marshal(top)
}

// mentionsEncrypted is a cheap test that a part of an answer may hold an
// encrypted event, so that answers without any are not decoded further.
func mentionsEncrypted(raw json.RawMessage) bool {
	return bytes.Contains(raw, []byte("m.room.encrypted"))
}

// isDMLSToDevice reports whether a to-device event is a DMLS one.
func isDMLSToDevice(raw json.RawMessage) bool {
	var ev struct {
		Type    string `json:"type"`
		Content struct {
			Algorithm string `json:"algorithm"`
		} `json:"content"`
	}
	return json.Unmarshal(raw, &ev) == nil && ev.Type == "m.room.encrypted" && strings.HasPrefix(ev.Content.Algorithm, dmlsPrefix)
}

// rewriteObject rewrites the event lists (commits left out) and single
// events (commits kept) of an answer object, with one hold for all.
func rewriteObject(ctx context.Context, rw *rewriter, body []byte, listKeys, singleKeys []string) ([]byte, error) {
	top, ok := object(body)
	if !ok {
		rw.metrics.Malformed.WithLabelValues("homeserver").Inc()
		return nil, errMalformed("event")
	}
	if !mentionsEncrypted(body) {
		return body, nil
	}
	keys := map[*eventList]string{}
	var lists []*eventList
	for _, k := range listKeys {
		if events, ok := array(top[k]); ok {
			l := &eventList{events: events, dropCommits: true}
			keys[l] = k
			lists = append(lists, l)
		}
	}
	singles := map[*eventList]string{}
	for _, k := range singleKeys {
		if raw, ok := top[k]; ok && len(raw) > 0 && raw[0] == '{' {
			l := &eventList{events: []json.RawMessage{raw}}
			singles[l] = k
			lists = append(lists, l)
		}
	}
	if err := rw.rewrite(ctx, lists); err != nil {
		return nil, err
	}
	for l, k := range keys {
		if err := set(top, k, l.events); err != nil {
			return nil, err
		}
	}
	for l, k := range singles {
		top[k] = l.events[0]
	}
	return json.Marshal(top)
}

// rewriteEvent rewrites an answer that is one event (commits kept).
func rewriteEvent(ctx context.Context, rw *rewriter, body []byte) ([]byte, error) {
	if _, ok := object(body); !ok {
		rw.metrics.Malformed.WithLabelValues("homeserver").Inc()
		return nil, errMalformed("/event")
	}
	l := &eventList{events: []json.RawMessage{body}}
	if err := rw.rewrite(ctx, []*eventList{l}); err != nil {
		return nil, err
	}
	return l.events[0], nil
}

// sync serves GET /sync: the homeserver's, rewritten.
func (s *Server) sync(w http.ResponseWriter, r *http.Request, a *access) error {
	q := r.URL.Query()
	timeout := time.Duration(0)
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			return mxErr(http.StatusBadRequest, errInvalidParam, "timeout must be a whole number of milliseconds")
		}
		// A held answer must still come within the time the bot
		// allowed: the homeserver waits for less by the hold.
		timeout = min(time.Duration(ms)*time.Millisecond, 10*time.Minute)
		q.Set("timeout", strconv.FormatInt(max(0, timeout-s.cfg.Settings.SyncHold.D()).Milliseconds(), 10))
	}
	if f := q.Get("filter"); strings.HasPrefix(strings.TrimSpace(f), "{") {
		q.Set("filter", string(widenFilter([]byte(f), true)))
	}
	return s.getRewritten(w, r, a, q, timeout+s.cfg.Settings.SyncHold.D()+time.Minute, rewriteSync)
}

// readRewritten serves a GET whose answer the façade rewrites with fn.
func (s *Server) readRewritten(w http.ResponseWriter, r *http.Request, a *access, q map[string][]string,
	fn func(ctx context.Context, rw *rewriter, body []byte) ([]byte, error)) error {
	return s.getRewritten(w, r, a, q, s.cfg.Settings.SyncHold.D()+time.Minute, fn)
}

// getRewritten makes the GET to the homeserver within limit and answers
// with its answer rewritten by fn (an error answer is relayed as is).
func (s *Server) getRewritten(w http.ResponseWriter, r *http.Request, a *access, q map[string][]string, limit time.Duration,
	fn func(ctx context.Context, rw *rewriter, body []byte) ([]byte, error)) error {
	ctx, cancel := context.WithTimeout(r.Context(), limit)
	defer cancel()
	ans, err := s.call(ctx, a, http.MethodGet, r.URL.EscapedPath(), q, nil)
	if err != nil {
		return err
	}
	if ans.status != http.StatusOK {
		relay(w, ans)
		return nil
	}
	body, err := fn(ctx, s.rewriter(a), ans.body)
	if err != nil {
		return err
	}
	writeRaw(w, http.StatusOK, body)
	return nil
}

// messages serves GET /rooms/{room}/messages.
func (s *Server) messages(w http.ResponseWriter, r *http.Request, a *access) error {
	q := r.URL.Query()
	if f := q.Get("filter"); strings.HasPrefix(strings.TrimSpace(f), "{") {
		q.Set("filter", string(widenFilter([]byte(f), false)))
	}
	return s.readRewritten(w, r, a, q, func(ctx context.Context, rw *rewriter, body []byte) ([]byte, error) {
		return rewriteObject(ctx, rw, body, []string{"chunk"}, nil)
	})
}

// context serves GET /rooms/{room}/context/{event}.
func (s *Server) context(w http.ResponseWriter, r *http.Request, a *access) error {
	q := r.URL.Query()
	if f := q.Get("filter"); strings.HasPrefix(strings.TrimSpace(f), "{") {
		q.Set("filter", string(widenFilter([]byte(f), false)))
	}
	return s.readRewritten(w, r, a, q, func(ctx context.Context, rw *rewriter, body []byte) ([]byte, error) {
		return rewriteObject(ctx, rw, body, []string{"events_before", "events_after"}, []string{"event"})
	})
}

// event serves GET /rooms/{room}/event/{event}.
func (s *Server) event(w http.ResponseWriter, r *http.Request, a *access) error {
	return s.readRewritten(w, r, a, r.URL.Query(), rewriteEvent)
}

// Filters. A bot's filter may list the event types it wants ("types":
// ["m.room.message"]); the homeserver would then never give it the
// m.room.encrypted events its messages arrive in. Filters the bot makes
// through the façade (POST /user/{user}/filter, or inline in /sync and
// /messages) are widened to let m.room.encrypted through; what they
// decrypt to is not filtered again (a bot may see a decrypted type it did
// not list, which bots ignore like any unknown event).

// widenFilter widens a filter (a Filter if sync, whose room.timeline is
// widened, else a RoomEventFilter). Anything it cannot read is returned
// unchanged, for the homeserver to judge.
func widenFilter(data []byte, sync bool) []byte {
	top, ok := object(data)
	if !ok {
		return data
	}
	if !sync {
		if !widenEventFilter(top) {
			return data
		}
		out, err := json.Marshal(top)
		if err != nil {
			return data
		}
		return out
	}
	room, ok := object(top["room"])
	if !ok {
		return data
	}
	timeline, ok := object(room["timeline"])
	if !ok || !widenEventFilter(timeline) {
		return data
	}
	if set(room, "timeline", timeline) != nil || set(top, "room", room) != nil {
		return data
	}
	out, err := json.Marshal(top)
	if err != nil {
		return data
	}
	return out
}

// widenEventFilter lets m.room.encrypted through an event filter's types
// and not_types, and reports whether it changed anything.
func widenEventFilter(f map[string]json.RawMessage) bool {
	changed := false
	var types []string
	if raw, ok := f["types"]; ok && json.Unmarshal(raw, &types) == nil && types != nil {
		found := false
		for _, t := range types {
			found = found || globMatch(t, "m.room.encrypted")
		}
		if !found {
			types = append(types, "m.room.encrypted")
			if set(f, "types", types) == nil {
				changed = true
			}
		}
	}
	var notTypes []string
	if raw, ok := f["not_types"]; ok && json.Unmarshal(raw, &notTypes) == nil && notTypes != nil {
		kept := notTypes[:0:0]
		for _, t := range notTypes {
			if !globMatch(t, "m.room.encrypted") {
				kept = append(kept, t)
			}
		}
		if len(kept) != len(notTypes) && set(f, "not_types", kept) == nil {
			changed = true
		}
	}
	return changed
}

// globMatch matches s against a filter pattern, where * matches any run
// of characters (the client-server API's event type wildcards).
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// createFilter serves POST /user/{user}/filter: the bot's filter,
// widened, made on the homeserver.
func (s *Server) createFilter(w http.ResponseWriter, r *http.Request, a *access) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	ans, err := s.call(r.Context(), a, http.MethodPost, r.URL.EscapedPath(), r.URL.Query(), widenFilter(body, true))
	if err != nil {
		return err
	}
	relay(w, ans)
	return nil
}
