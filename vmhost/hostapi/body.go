package hostapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

// bodyTypes maps each operation with a JSON body (method and gin route) to
// a constructor of its body type.
var bodyTypes = map[string]func() any{
	"PUT /host/v1/instances/:id":            func() any { return new(hostapi.InstanceSpec) },
	"POST /host/v1/instances/:id/standby":   func() any { return new(hostapi.StandbyRequest) },
	"POST /host/v1/instances/:id/restore":   func() any { return new(hostapi.RestoreRequest) },
	"POST /host/v1/instances/:id/snapshots": func() any { return new(hostapi.SnapshotRequest) },
	"POST /host/v1/snapshots/:id/fork":      func() any { return new(hostapi.ForkRequest) },
}

// strictBody reads the body (at most limit bytes) and decodes it strictly
// into its operation's type: unknown fields, trailing data, wrong types
// and an oversized body are 400 invalid_request. The body is then handed
// on unchanged for the generated handler to decode.
func strictBody(limit int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.Body == nil || c.Request.Body == http.NoBody {
			c.Next()
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
		b, err := io.ReadAll(c.Request.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(c, api.NewError(api.ErrorCodeInvalidRequest, "request body exceeds %d bytes", limit))
				return
			}
			writeError(c, api.NewError(api.ErrorCodeInvalidRequest, "read request body: %v", err))
			return
		}
		c.Request.Body = io.NopCloser(bytes.NewReader(b))
		newBody := bodyTypes[c.Request.Method+" "+c.FullPath()]
		if newBody != nil {
			if err := decodeStrict(b, newBody()); err != nil {
				writeError(c, api.NewError(api.ErrorCodeInvalidRequest, "request body: %v", err))
				return
			}
		}
		c.Next()
	}
}

// decodeStrict decodes exactly one JSON value with no unknown field.
func decodeStrict(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("empty body, want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON object")
	}
	return nil
}
