package csapi

import (
	"encoding/json"
	"net/http"
	"strings"
)

// refusedFeatures name the unstable features the façade refuses although
// the homeserver offers them: sliding sync (MSC3575 and its simplified
// form, MSC4186), whose responses it does not rewrite (routes.go). An SDK
// that sees one advertised in /versions tries it before /sync.
var refusedFeatures = []string{"msc3575", "msc4186"}

// serveVersions answers /versions with the homeserver's answer, with the
// refused features turned off.
func (s *Server) serveVersions(w http.ResponseWriter, r *http.Request, _ *access) error {
	ans, err := s.call(r.Context(), nil, http.MethodGet, "/_matrix/client/versions", nil, nil)
	if err != nil {
		return err
	}
	if ans.status == http.StatusOK {
		if body, ok := withoutRefusedFeatures(ans.body); ok {
			ans.body = body
		}
	}
	relay(w, ans)
	return nil
}

// withoutRefusedFeatures sets every refused feature of a /versions answer
// to false; ok is false if body is not a /versions answer (it is then
// relayed as it came).
func withoutRefusedFeatures(body []byte) ([]byte, bool) {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil || doc == nil {
		return nil, false
	}
	changed := false
	for key, raw := range doc {
		// Any spelling: some JSON decoders match field names without
		// regard to case.
		if !strings.EqualFold(key, "unstable_features") || string(raw) == "null" {
			continue
		}
		var features map[string]bool
		if json.Unmarshal(raw, &features) != nil {
			return nil, false
		}
		for name, on := range features {
			for _, f := range refusedFeatures {
				if on && strings.Contains(strings.ToLower(name), f) {
					features[name], changed = false, true
				}
			}
		}
		var err error
		if doc[key], err = json.Marshal(features); err != nil {
			return nil, false
		}
	}
	if !changed {
		return body, true
	}
	out, err := json.Marshal(doc)
	return out, err == nil
}
