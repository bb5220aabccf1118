package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Stream is one connection to the event stream.
type Stream struct {
	body io.ReadCloser
	r    *bufio.Reader
	// LastID is the id of the last event Next returned: reconnect with it.
	LastID string
}

// Events opens the event stream after event id after ("" for the next
// event, "0" for the whole log), of the given puppets only if any.
func (c *Client) Events(ctx context.Context, after string, puppets ...string) (*Stream, error) {
	q := url.Values{}
	for _, p := range puppets {
		q.Add("puppet", p)
	}
	path := "/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := c.request(ctx, "GET", path, nil, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if after != "" {
		req.Header.Set("Last-Event-ID", after)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decode(resp, nil)
	}
	return &Stream{body: resp.Body, r: bufio.NewReaderSize(resp.Body, 64<<10), LastID: after}, nil
}

// Next returns the next event; it blocks until one comes.
func (s *Stream) Next() (Event, error) {
	var id, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return Event{}, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data == "" {
				continue
			}
			var ev Event
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				return Event{}, fmt.Errorf("event %s: %w", id, err)
			}
			if ev.ID == "" {
				ev.ID = id
			}
			s.LastID = ev.ID
			return ev, nil
		case strings.HasPrefix(line, ":"):
			// a comment (keepalive)
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "data":
				if data != "" {
					data += "\n"
				}
				data += value
			}
		}
	}
}

// Close closes the connection.
func (s *Stream) Close() error { return s.body.Close() }

// Listen calls fn with each event, in order, from after event id after
// ("" for the next event), reconnecting with the last id it handled
// whenever the connection breaks, until ctx ends or fn fails. An event
// whose fn failed is not acknowledged: the error is returned and the
// caller may listen again from the last id handled.
func (c *Client) Listen(ctx context.Context, after string, fn func(Event) error, puppets ...string) error {
	last := after
	for delay := 500 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		s, err := c.Events(ctx, last, puppets...)
		if err == nil {
			delay = 500 * time.Millisecond
			for {
				var ev Event
				if ev, err = s.Next(); err != nil {
					break
				}
				if err := fn(ev); err != nil {
					s.Close()
					return err
				}
				last = ev.ID
			}
			s.Close()
		}
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusTooManyRequests {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}
