package api

import (
	"context"
	"net/http"
)

// BearerAuth returns a request editor for the generated clients that sends
// token as "Authorization: Bearer <token>" (the user token here; the
// cluster token with package hostapi, converting with
// hostapi.RequestEditorFn(api.BearerAuth(t))).
func BearerAuth(token string) RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}
