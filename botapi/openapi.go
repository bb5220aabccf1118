package botapi

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 description of the API, checked in
// beside the code and served as it is. TestOpenAPIMatchesRoutes fails
// when it and the route table disagree.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI document.
func OpenAPI() []byte { return openAPIDocument }

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request, _ string) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(openAPIDocument)
	return nil
}
