package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls the bot API as one bot.
type Client struct {
	base  string
	token string
	// HTTP makes the requests (http.DefaultClient if nil). Event streams
	// stay open, so its Timeout must be zero.
	HTTP *http.Client
}

// New returns a client of the bot API at baseURL (http://host:port)
// authenticating with the bot's token.
func New(baseURL, token string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token}
}

// Error is an error answer of the API.
type Error struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field,omitempty"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

func (e *Error) Error() string {
	s := fmt.Sprintf("bot API: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	return s
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) request(ctx context.Context, method, path string, in any, header http.Header) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// do makes a request and decodes a 2xx answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any, header http.Header) error {
	req, err := c.request(ctx, method, path, in, header)
	if err != nil {
		return err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decode(resp, out)
}

func decode(resp *http.Response, out any) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(body, e) != nil || e.Code == "" {
			e.Code, e.Message = "http_error", strings.TrimSpace(string(body))
		}
		return e
	}
	if out == nil || len(body) == 0 {
		return nil
	}
	return json.Unmarshal(body, out)
}

// p escapes a path segment (user and room IDs).
func p(s string) string { return url.PathEscape(s) }

// Puppet is one of the bot's puppets.
type Puppet struct {
	UserID  string   `json:"user_id"`
	Devices []string `json:"devices"`
}

// CreatePuppet describes a new puppet.
type CreatePuppet struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
}

// CreatePuppet creates a puppet (again: harmless).
func (c *Client) CreatePuppet(ctx context.Context, req CreatePuppet) (Puppet, error) {
	var out Puppet
	err := c.do(ctx, "POST", "/v1/puppets", req, &out, nil)
	return out, err
}

// Puppets lists the bot's puppets.
func (c *Client) Puppets(ctx context.Context) ([]Puppet, error) {
	var out struct {
		Puppets []Puppet `json:"puppets"`
	}
	err := c.do(ctx, "GET", "/v1/puppets", nil, &out, nil)
	return out.Puppets, err
}

// DeletePuppet deletes a puppet.
func (c *Client) DeletePuppet(ctx context.Context, puppet string) error {
	return c.do(ctx, "DELETE", "/v1/puppets/"+p(puppet), nil, nil, nil)
}

// AddDevice gives a puppet another device.
func (c *Client) AddDevice(ctx context.Context, puppet, device, displayName string) error {
	return c.do(ctx, "POST", "/v1/puppets/"+p(puppet)+"/devices",
		map[string]string{"device_id": device, "display_name": displayName}, nil, nil)
}

// CreateRoom describes a new DMLS room.
type CreateRoom struct {
	Name     string   `json:"name,omitempty"`
	Topic    string   `json:"topic,omitempty"`
	Invite   []string `json:"invite,omitempty"`
	Preset   string   `json:"preset,omitempty"`
	DeviceID string   `json:"device_id,omitempty"`
}

// CreateRoom creates a DMLS room as puppet and returns its ID.
func (c *Client) CreateRoom(ctx context.Context, puppet string, req CreateRoom) (string, error) {
	var out struct {
		RoomID string `json:"room_id"`
	}
	err := c.do(ctx, "POST", "/v1/puppets/"+p(puppet)+"/rooms", req, &out, nil)
	return out.RoomID, err
}

func (c *Client) roomPath(puppet, room, tail string) string {
	return "/v1/puppets/" + p(puppet) + "/rooms/" + p(room) + tail
}

// Join joins puppet to room.
func (c *Client) Join(ctx context.Context, puppet, room string, via ...string) error {
	return c.do(ctx, "POST", c.roomPath(puppet, room, "/join"), map[string]any{"via": via}, nil, nil)
}

// Leave makes puppet leave room.
func (c *Client) Leave(ctx context.Context, puppet, room string) error {
	return c.do(ctx, "POST", c.roomPath(puppet, room, "/leave"), nil, nil, nil)
}

// Invite invites user to room as puppet.
func (c *Client) Invite(ctx context.Context, puppet, room, user string) error {
	return c.do(ctx, "POST", c.roomPath(puppet, room, "/invite"), map[string]string{"user_id": user}, nil, nil)
}

// Kick removes user from room as puppet.
func (c *Client) Kick(ctx context.Context, puppet, room, user, reason string) error {
	return c.do(ctx, "POST", c.roomPath(puppet, room, "/kick"), map[string]string{"user_id": user, "reason": reason}, nil, nil)
}

// RoomState is a room's MLS state.
type RoomState struct {
	RoomID        string            `json:"room_id"`
	State         string            `json:"state"`
	Epoch         uint64            `json:"epoch"`
	EpochID       string            `json:"epoch_id"`
	Authenticator string            `json:"authenticator"`
	Heads         []string          `json:"heads"`
	Converged     bool              `json:"converged"`
	Devices       []string          `json:"devices"`
	Members       map[string]string `json:"members"`
	WithoutMLS    []string          `json:"members_without_mls"`
}

// Room returns a room's MLS state as seen by one of the bot's puppets.
func (c *Client) Room(ctx context.Context, puppet, room string) (RoomState, error) {
	var out RoomState
	err := c.do(ctx, "GET", c.roomPath(puppet, room, ""), nil, &out, nil)
	return out, err
}

// SendResult is what a send did.
type SendResult struct {
	RoomID  string `json:"room_id"`
	EventID string `json:"event_id"`
	TxnID   string `json:"txn_id"`
}

// Send sends an event as puppet. A non-empty idempotencyKey makes a
// retry of the same send return the first result without sending again.
func (c *Client) Send(ctx context.Context, puppet, room, eventType string, content any, idempotencyKey string) (SendResult, error) {
	var out SendResult
	h := http.Header{}
	if idempotencyKey != "" {
		h.Set("Idempotency-Key", idempotencyKey)
	}
	err := c.do(ctx, "POST", c.roomPath(puppet, room, "/messages"), map[string]any{"type": eventType, "content": content}, &out, h)
	return out, err
}

// Event is one event delivered to one of the bot's puppets.
type Event struct {
	ID             string          `json:"id"`
	Puppet         string          `json:"puppet"`
	Seq            int64           `json:"seq"`
	Kind           string          `json:"kind"`
	RoomID         string          `json:"room_id"`
	EventID        string          `json:"event_id"`
	Sender         string          `json:"sender"`
	SenderDevice   string          `json:"sender_device"`
	Type           string          `json:"type"`
	Content        json.RawMessage `json:"content"`
	OriginServerTS int64           `json:"origin_server_ts"`
	DeliveredAt    time.Time       `json:"delivered_at"`
}

// History is a page of a room's history, newest first.
type History struct {
	Events     []Event `json:"events"`
	NextBefore int64   `json:"next_before"`
}

// History returns up to limit events of room as delivered to puppet,
// before seq (0: the newest).
func (c *Client) History(ctx context.Context, puppet, room string, before int64, limit int) (History, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out History
	err := c.do(ctx, "GET", c.roomPath(puppet, room, "/messages?"+q.Encode()), nil, &out, nil)
	return out, err
}

// Webhook is the bot's webhook.
type Webhook struct {
	URL       string `json:"url"`
	Secret    string `json:"secret"`
	Position  int64  `json:"position"`
	Pending   int64  `json:"pending"`
	Attempts  int    `json:"attempts"`
	Parked    bool   `json:"parked"`
	LastError string `json:"last_error"`
	Delivered int64  `json:"delivered"`
	Failures  int64  `json:"failures"`
}

// SetWebhook registers the bot's webhook; deliveries start after event
// after if it is not nil (0: the whole log), else with the next event.
// The answer holds the secret, shown only now.
func (c *Client) SetWebhook(ctx context.Context, webhookURL string, after *int64) (Webhook, error) {
	var out Webhook
	err := c.do(ctx, "PUT", "/v1/webhook", map[string]any{"url": webhookURL, "after": after}, &out, nil)
	return out, err
}

// Webhook returns the webhook's state.
func (c *Client) Webhook(ctx context.Context) (Webhook, error) {
	var out Webhook
	err := c.do(ctx, "GET", "/v1/webhook", nil, &out, nil)
	return out, err
}

// ResumeWebhook resumes a parked webhook.
func (c *Client) ResumeWebhook(ctx context.Context) (Webhook, error) {
	var out Webhook
	err := c.do(ctx, "POST", "/v1/webhook/resume", nil, &out, nil)
	return out, err
}

// DeleteWebhook deletes the webhook.
func (c *Client) DeleteWebhook(ctx context.Context) error {
	return c.do(ctx, "DELETE", "/v1/webhook", nil, nil, nil)
}
