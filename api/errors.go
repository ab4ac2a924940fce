package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Codes lists every ErrorCode of the spec's enum, in the order of DESIGN §7.
// TestSpec checks that it matches openapi.yaml exactly.
var Codes = []ErrorCode{
	ErrorCodeInvalidRequest,
	ErrorCodeInvalidSnapshotCompression,
	ErrorCodeInvalidSnapshotPolicy,
	ErrorCodeUnauthorized,
	ErrorCodeNotFound,
	ErrorCodeInvalidState,
	ErrorCodeConflict,
	ErrorCodeNoCapacity,
	ErrorCodeHostUnavailable,
	ErrorCodeInternal,
}

// Sentinels, one per code. Match them with errors.Is on either side of the
// wire: a handler returns (or wraps) one, the error middleware turns it into
// {code, message} with ToError and StatusFor, and the client turns the
// response back into an *Error with FromResponse, which errors.Is matches
// against the same sentinel (containerd's errgrpc.ToGRPC / ToNative).
//
// Never modify a sentinel; create a specific error with NewError or wrap a
// sentinel with fmt.Errorf("instance %s: %w", id, ErrNotFound).
var (
	ErrInvalidRequest             = &Error{Code: ErrorCodeInvalidRequest, Message: "invalid request"}
	ErrInvalidSnapshotCompression = &Error{Code: ErrorCodeInvalidSnapshotCompression, Message: "invalid snapshot compression"}
	ErrInvalidSnapshotPolicy      = &Error{Code: ErrorCodeInvalidSnapshotPolicy, Message: "invalid snapshot policy"}
	ErrUnauthorized               = &Error{Code: ErrorCodeUnauthorized, Message: "unauthorized"}
	ErrNotFound                   = &Error{Code: ErrorCodeNotFound, Message: "not found"}
	ErrInvalidState               = &Error{Code: ErrorCodeInvalidState, Message: "invalid state"}
	ErrConflict                   = &Error{Code: ErrorCodeConflict, Message: "conflict"}
	ErrNoCapacity                 = &Error{Code: ErrorCodeNoCapacity, Message: "no capacity"}
	ErrHostUnavailable            = &Error{Code: ErrorCodeHostUnavailable, Message: "host unavailable"}
	ErrInternal                   = &Error{Code: ErrorCodeInternal, Message: "internal error"}
)

// Sentinel returns the sentinel of a code, or ErrInternal for a code that is
// not in the enum.
func Sentinel(code ErrorCode) *Error {
	switch code {
	case ErrorCodeInvalidRequest:
		return ErrInvalidRequest
	case ErrorCodeInvalidSnapshotCompression:
		return ErrInvalidSnapshotCompression
	case ErrorCodeInvalidSnapshotPolicy:
		return ErrInvalidSnapshotPolicy
	case ErrorCodeUnauthorized:
		return ErrUnauthorized
	case ErrorCodeNotFound:
		return ErrNotFound
	case ErrorCodeInvalidState:
		return ErrInvalidState
	case ErrorCodeConflict:
		return ErrConflict
	case ErrorCodeNoCapacity:
		return ErrNoCapacity
	case ErrorCodeHostUnavailable:
		return ErrHostUnavailable
	}
	return ErrInternal
}

// Error implements the error interface: the message, which already names the
// resource or field, or the code when there is no message.
func (e *Error) Error() string {
	if e == nil {
		return "internal error (nil *api.Error)"
	}
	if e.Message == "" {
		return string(e.Code)
	}
	return e.Message
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrNotFound) holds for every not_found error, whatever its
// message and wherever it was decoded.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e != nil && t != nil && t.Code == e.Code
}

// Status is the HTTP status of the error's code.
func (e *Error) Status() int { return StatusFor(e.Code) }

// NewError returns an error with the code and a formatted message. The
// message should name the offending field or resource and, for a value out
// of range, the allowed range.
func NewError(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// StatusFor returns the HTTP status that goes with a code: 400, 401, 404,
// 409, 503, and 500 for internal and any code outside the enum.
func StatusFor(code ErrorCode) int {
	switch code {
	case ErrorCodeInvalidRequest, ErrorCodeInvalidSnapshotCompression, ErrorCodeInvalidSnapshotPolicy:
		return http.StatusBadRequest
	case ErrorCodeUnauthorized:
		return http.StatusUnauthorized
	case ErrorCodeNotFound:
		return http.StatusNotFound
	case ErrorCodeInvalidState, ErrorCodeConflict:
		return http.StatusConflict
	case ErrorCodeNoCapacity, ErrorCodeHostUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// CodeFor guesses the code of an error response that carries none (a body
// that is not ours: a proxy, gin's own 404 or 405, a body-size limit). It is
// the inverse of StatusFor where that is unambiguous; 503 is taken as
// host_unavailable, other 4xx as invalid_request, other 5xx as internal.
func CodeFor(status int) ErrorCode {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ErrorCodeUnauthorized
	case status == http.StatusNotFound:
		return ErrorCodeNotFound
	case status == http.StatusConflict:
		return ErrorCodeConflict
	case status == http.StatusServiceUnavailable:
		return ErrorCodeHostUnavailable
	case status >= 400 && status < 500:
		return ErrorCodeInvalidRequest
	}
	return ErrorCodeInternal
}

// ToError turns any error into the body of an error response. An *Error
// anywhere in err's chain gives the code (and its field problems); the
// message is err's full text, so the context added by wrapping reaches the
// client. Any other error, and nil, is internal. The result is a new value,
// never a sentinel.
func ToError(err error) *Error {
	if err == nil {
		return &Error{Code: ErrorCodeInternal, Message: "internal error (nil error)"}
	}
	out := &Error{Code: ErrorCodeInternal, Message: err.Error()}
	var e *Error
	if errors.As(err, &e) && e != nil && e.Code.Valid() {
		out.Code = e.Code
		if e.Fields != nil {
			fields := append([]FieldError(nil), *e.Fields...)
			out.Fields = &fields
		}
	}
	if out.Message == "" {
		out.Message = string(out.Code)
	}
	return out
}

// maxMessageBody bounds how much of a foreign (non-JSON) error body is kept
// in the message.
const maxMessageBody = 512

// FromResponse turns an HTTP response into an error: nil for a status below
// 400, otherwise an *Error that errors.Is matches against the sentinel of
// its code. A body with a valid {code, message} is kept as sent; any other
// body (not JSON, unknown code) gets CodeFor(status) and a message quoting
// the start of the body. It never fails: bad bytes from the network become
// a clear error, not a panic.
func FromResponse(status int, body []byte) error {
	if status < 400 {
		return nil
	}
	var e Error
	if err := json.Unmarshal(body, &e); err == nil && e.Code.Valid() {
		if e.Message == "" {
			e.Message = string(e.Code)
		}
		return &e
	}
	code := CodeFor(status)
	msg := strings.ToValidUTF8(strings.TrimSpace(string(body)), "\uFFFD")
	if len(msg) > maxMessageBody {
		cut := maxMessageBody
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &Error{Code: code, Message: fmt.Sprintf("HTTP %d: %s", status, msg)}
}

var _ error = (*Error)(nil)
