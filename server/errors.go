package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/compression"
)

// fail records err for errorMiddleware and stops the handler chain. Every
// error path of the server goes through it: handlers, request decoding,
// auth, unknown routes, panics.
func fail(c *gin.Context, err error) {
	_ = c.Error(err)
	c.Abort()
}

// errorMiddleware is the one place where an error becomes a response: the
// status and {code, message} of api.ToError, so that the client's
// api.FromResponse gives back an error that errors.Is matches against the
// same sentinel. It also turns a panic into a 500 rather than a dropped
// connection. Anything that is not an *api.Error is internal (500) and
// logged in full.
func (s *Server) errorMiddleware(c *gin.Context) {
	func() {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic in handler", "path", c.Request.URL.Path, "panic", r, "stack", string(debug.Stack()))
				fail(c, fmt.Errorf("panic: %v", r))
			}
		}()
		c.Next()
	}()
	if len(c.Errors) == 0 || c.Writer.Written() {
		return
	}
	err := c.Errors.Last().Err
	e := api.ToError(err)
	if e.Code == api.ErrorCodeInternal {
		s.log.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	c.JSON(e.Status(), e)
}

// requestError is the strict handler's RequestErrorHandlerFunc: a body that
// cannot be decoded (malformed JSON, wrong type, unknown field, too large).
func requestError(c *gin.Context, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		fail(c, api.NewError(api.ErrorCodeInvalidRequest, "request body too large: the limit is %d bytes", mbe.Limit))
		return
	}
	fail(c, api.NewError(api.ErrorCodeInvalidRequest, "request body: %v", err))
}

// policyError turns a compression problem found by compression.Resolve into
// the API error of its source: invalid_snapshot_compression for a request
// override, invalid_snapshot_policy for an instance policy, with every
// problem as a field. A server default problem is internal: Validate
// refused it at start.
func policyError(err error) error {
	var ve *compression.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	code := api.ErrorCodeInternal
	prefix := ""
	switch ve.Source {
	case compression.SourceRequest:
		code = api.ErrorCodeInvalidSnapshotCompression
	case compression.SourceInstance:
		code = api.ErrorCodeInvalidSnapshotPolicy
		prefix = "snapshot_policy."
	}
	fields := make([]api.FieldError, 0, len(ve.Problems))
	for _, p := range ve.Problems {
		fields = append(fields, api.FieldError{Field: prefix + p.Field, Message: p.Message})
	}
	e := api.NewError(code, "%v", ve)
	e.Fields = &fields
	return e
}

// badRequest is a 400 invalid_request naming the problem.
func badRequest(format string, args ...any) error {
	return api.NewError(api.ErrorCodeInvalidRequest, format, args...)
}

// hostError keeps a host's answer as it is (its *api.Error says what went
// wrong) and turns a host that could not be reached into 503
// host_unavailable. A cancelled request stays a cancellation.
func hostError(hostID string, err error) error {
	if err == nil {
		return nil
	}
	var e *api.Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: host %s cannot be reached: %v", api.ErrHostUnavailable, hostID, err)
}
