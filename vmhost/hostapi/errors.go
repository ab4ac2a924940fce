package hostapi

import (
	"context"
	"errors"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// toAPIError is the one place that turns an error of the layers below into
// the {code, message} of the host API. The message is err's full text (the
// context added by wrapping reaches the server); the code comes from the
// first sentinel that matches, in an order that puts the more specific
// meaning first (an invalid id wraps both ErrNotFound and
// ErrInvalidArgument in the manager, and is a bad request).
func toAPIError(err error) *api.Error {
	var ve *compression.ValidationError
	if errors.As(err, &ve) {
		code := api.ErrorCodeInvalidSnapshotCompression
		switch ve.Source {
		case compression.SourceInstance:
			code = api.ErrorCodeInvalidSnapshotPolicy
		case compression.SourceServerDefault:
			// The host's own default is broken: not the caller's fault.
			code = api.ErrorCodeInternal
		}
		out := &api.Error{Code: code, Message: err.Error()}
		if len(ve.Problems) > 0 {
			fields := make([]api.FieldError, len(ve.Problems))
			for i, p := range ve.Problems {
				fields[i] = api.FieldError{Field: p.Field, Message: p.Message}
			}
			out.Fields = &fields
		}
		return out
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return api.ToError(err)
	}
	code := api.ErrorCodeInternal
	switch {
	case err == nil:
		return api.ToError(err)
	case errors.Is(err, manager.ErrInvalidArgument):
		code = api.ErrorCodeInvalidRequest
	case errors.Is(err, compression.ErrInvalidPolicy):
		code = api.ErrorCodeInvalidSnapshotCompression
	case errors.Is(err, manager.ErrInvalidState), errors.Is(err, vmhost.ErrInvalidState):
		code = api.ErrorCodeInvalidState
	case errors.Is(err, vmhost.ErrSnapshotMismatch):
		// The request is well formed, but the snapshot cannot run here
		// (another guest image, hypervisor or size); the message says why.
		code = api.ErrorCodeConflict
	case errors.Is(err, manager.ErrBusy), errors.Is(err, manager.ErrAlreadyExists):
		code = api.ErrorCodeConflict
	case errors.Is(err, manager.ErrNotFound), errors.Is(err, storage.ErrNotFound):
		code = api.ErrorCodeNotFound
	case errors.Is(err, manager.ErrClosed), errors.Is(err, errShuttingDown),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = api.ErrorCodeHostUnavailable
	}
	return &api.Error{Code: code, Message: err.Error()}
}

// errShuttingDown: the daemon is stopping; the server retries elsewhere or
// later.
var errShuttingDown = errors.New("host is shutting down")

// isNotFound reports whether err means "absent" by the same mapping the
// API answers with (an invalid id that the manager also calls not found
// is a bad request, not an absence).
func isNotFound(err error) bool {
	return err != nil && toAPIError(err).Code == api.ErrorCodeNotFound
}
