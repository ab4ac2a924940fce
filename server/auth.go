package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
)

// Route groups by the token they need.
const (
	clusterPrefix = "/cluster/"
	healthPath    = "/healthz"
)

// tokenHash is what a token is compared through: comparing fixed-size
// hashes in constant time leaks neither the content nor the length.
type tokenHash [sha256.Size]byte

func hashToken(s string) tokenHash { return sha256.Sum256([]byte(s)) }

// authMiddleware admits a request to /healthz without a token, to
// /cluster/... with the cluster token only, and to everything else
// (/v1/..., /metrics, /openapi.yaml, unknown routes) with the user token
// only. The route is the one gin matched (FullPath), not a prefix of the
// raw path, so no spelling of a path reaches a handler with the other
// token. A missing or wrong token is 401 unauthorized.
func (s *Server) authMiddleware(c *gin.Context) {
	route := c.FullPath()
	if route == healthPath {
		c.Next()
		return
	}
	want, who := s.userToken, "user"
	if strings.HasPrefix(route, clusterPrefix) {
		want, who = s.clusterToken, "cluster"
	}
	got, ok := bearer(c.GetHeader("Authorization"))
	if !ok {
		c.Header("WWW-Authenticate", `Bearer realm="hangar"`)
		fail(c, api.NewError(api.ErrorCodeUnauthorized, "missing bearer token: this endpoint needs the %s token", who))
		return
	}
	h := hashToken(got)
	if subtle.ConstantTimeCompare(h[:], want[:]) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="hangar", error="invalid_token"`)
		fail(c, api.NewError(api.ErrorCodeUnauthorized, "wrong bearer token: this endpoint needs the %s token", who))
		return
	}
	c.Next()
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	t := strings.TrimSpace(h[len(prefix):])
	return t, t != ""
}

// bodyLimitMiddleware bounds the request body: a larger one fails the
// decoding with *http.MaxBytesError, which requestError answers 400.
func (s *Server) bodyLimitMiddleware(c *gin.Context) {
	limit := s.cfg.HTTP.MaxBodyBytes
	if strings.HasPrefix(c.FullPath(), clusterPrefix) {
		limit = s.cfg.HTTP.MaxClusterBodyBytes
	}
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	}
	c.Next()
}
