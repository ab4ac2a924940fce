package hostapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
)

// bearerAuth refuses every request whose Authorization header is not
// "Bearer <token>" (scheme case-insensitive, RFC 9110). The comparison is
// constant-time over SHA-256 digests, so neither the token's bytes nor its
// length leak through timing.
func bearerAuth(token string) gin.HandlerFunc {
	want := sha256.Sum256([]byte(token))
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		scheme, got, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || got == "" {
			writeError(c, api.NewError(api.ErrorCodeUnauthorized, "missing bearer token: the host API needs the cluster token"))
			return
		}
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			writeError(c, api.NewError(api.ErrorCodeUnauthorized, "wrong token: the host API needs the cluster token"))
			return
		}
		c.Next()
	}
}
