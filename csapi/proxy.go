package csapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// Passing requests through. The bot's request goes to the homeserver as
// the puppet's device: its access token (header or query) is dropped and
// replaced by the appservice's as_token, and any user_id or device_id the
// bot put in the query is replaced by the token's own (DESIGN 7,
// masquerading), so a bot can act as nobody but its puppet device and
// our tokens never reach the homeserver. Bodies stream both ways.

// masquerade returns the query for the homeserver: q without the bot's
// token and identity parameters, with a's (nil a: none, for the public
// endpoints).
func masquerade(q url.Values, a *access) url.Values {
	out := url.Values{}
	for k, v := range q {
		switch k {
		case "access_token", "user_id", "device_id", "org.matrix.msc3202.device_id":
			continue
		}
		out[k] = v
	}
	if a != nil {
		out.Set("user_id", string(a.UserID))
		out.Set("device_id", string(a.DeviceID))
		out.Set("org.matrix.msc3202.device_id", string(a.DeviceID))
	}
	return out
}

// proxyFor returns a reverse proxy that sends a request to the homeserver
// as a (with no credentials if a is nil).
func (s *Server) proxyFor(a *access) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(s.upstream)
			pr.Out.Host = s.upstream.Host
			pr.Out.URL.RawQuery = masquerade(pr.In.URL.Query(), a).Encode()
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			if a != nil {
				pr.Out.Header.Set("Authorization", "Bearer "+s.cfg.ASToken)
			}
		},
		Transport: s.cfg.Client.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var tooLarge *http.MaxBytesError
			e := mxErr(http.StatusBadGateway, errUnknown, "the homeserver could not be reached; retry later").with(err)
			if errors.As(err, &tooLarge) {
				e = mxErr(http.StatusRequestEntityTooLarge, errTooLarge, "request body over %d bytes (csapi.max_upload_bytes)", tooLarge.Limit)
			} else if errors.Is(err, context.Canceled) {
				// The bot went away; nobody reads the answer.
				return
			}
			s.log.Warn().Err(err).Str("path", r.URL.Path).Msg("Passing a request through failed")
			writeError(w, e)
		},
	}
}

// passthrough sends the request to the homeserver as the token's puppet
// device, unchanged but for the credentials.
func (s *Server) passthrough(w http.ResponseWriter, r *http.Request, a *access) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.Settings.MaxUploadBytes)
	s.proxyFor(a).ServeHTTP(w, r)
	return nil
}

// answer is a homeserver answer read whole (for the façade to rewrite).
type answer struct {
	status int
	header http.Header
	body   []byte
}

// call makes a request to the homeserver as a: path is escaped, query
// the bot's (masqueraded here). The answer is read up to
// csapi.max_response_bytes.
func (s *Server) call(ctx context.Context, a *access, method, escapedPath string, query url.Values, body []byte) (*answer, error) {
	u, err := url.Parse(strings.TrimRight(s.upstream.String(), "/") + escapedPath)
	if err != nil {
		return nil, mxErr(http.StatusBadRequest, errUnrecognized, "malformed path")
	}
	u.RawQuery = masquerade(query, a).Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, escapedPath, err)
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.ASToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, escapedPath, err)
	}
	defer resp.Body.Close()
	limit := s.cfg.Settings.MaxResponseBytes
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, escapedPath, err)
	}
	if int64(len(data)) > limit {
		s.cfg.Metrics.Malformed.WithLabelValues("homeserver").Inc()
		return nil, mxErr(http.StatusBadGateway, errUnknown, "the homeserver's answer is over csapi.max_response_bytes (%d bytes)", limit)
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// relay answers with the homeserver's answer as it is (an error answer,
// or one the façade had nothing to change in).
func relay(w http.ResponseWriter, ans *answer) {
	if ct := ans.header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if ra := ans.header.Get("Retry-After"); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	w.WriteHeader(ans.status)
	_, _ = w.Write(ans.body)
}

// readBody reads a request body the façade handles itself, up to
// csapi.max_body_bytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Settings.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, mxErr(http.StatusRequestEntityTooLarge, errTooLarge, "request body over %d bytes (csapi.max_body_bytes)", tooLarge.Limit)
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return data, nil
}
