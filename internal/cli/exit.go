package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/config"
)

// Exit codes; see the package documentation.
const (
	ExitOK           = 0
	ExitError        = 1
	ExitUsage        = 2
	ExitNotFound     = 3
	ExitConflict     = 4
	ExitUnavailable  = 5
	ExitUnauthorized = 6
	ExitDamaged      = 7
)

// Errors of the CLI itself, matched with errors.Is by ExitCode.
var (
	// ErrUsage: bad flags, arguments or configuration.
	ErrUsage = errors.New("usage")
	// ErrUnreachable: the server could not be reached (no HTTP answer).
	ErrUnreachable = errors.New("server unreachable")
	// ErrDamaged: a verification found missing or corrupt data.
	ErrDamaged = errors.New("store damaged")
)

func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// ExitCode maps an error to the process exit code: api sentinels by
// errors.Is (they survive the wire, see api.FromResponse), then the CLI's
// own errors.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage), errors.Is(err, config.ErrInvalid), errors.Is(err, config.ErrInvalidValue), errors.Is(err, config.ErrUnknownKey),
		errors.Is(err, api.ErrInvalidRequest), errors.Is(err, api.ErrInvalidSnapshotCompression), errors.Is(err, api.ErrInvalidSnapshotPolicy):
		return ExitUsage
	case errors.Is(err, api.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, api.ErrConflict), errors.Is(err, api.ErrInvalidState):
		return ExitConflict
	case errors.Is(err, api.ErrNoCapacity), errors.Is(err, api.ErrHostUnavailable), errors.Is(err, ErrUnreachable):
		return ExitUnavailable
	case errors.Is(err, api.ErrUnauthorized):
		return ExitUnauthorized
	case errors.Is(err, ErrDamaged):
		return ExitDamaged
	}
	return ExitError
}

// errorDoc is the --json form of an error on stderr.
type errorDoc struct {
	Code     string            `json:"code"`
	Message  string            `json:"message"`
	Fields   *[]api.FieldError `json:"fields,omitempty"`
	ExitCode int               `json:"exit_code"`
}

// printError writes err to w for a human, or as one JSON object.
func printError(w io.Writer, err error, asJSON bool) {
	code := ExitCode(err)
	var ae *api.Error
	hasAPI := errors.As(err, &ae)
	if asJSON {
		doc := errorDoc{Code: codeName(code), Message: err.Error(), ExitCode: code}
		if hasAPI {
			doc.Code = string(ae.Code)
			doc.Fields = ae.Fields
		}
		b, _ := json.Marshal(doc)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	msg := strings.TrimPrefix(err.Error(), ErrUsage.Error()+": ")
	if hasAPI {
		msg += " (" + string(ae.Code) + ")"
	}
	fmt.Fprintf(w, "hangar: %s\n", msg)
	if hasAPI && ae.Fields != nil {
		for _, f := range *ae.Fields {
			fmt.Fprintf(w, "  %s: %s\n", f.Field, f.Message)
		}
	}
}

// codeName names a CLI-side error in --json output, in the style of the
// API's codes.
func codeName(exit int) string {
	switch exit {
	case ExitUsage:
		return "usage"
	case ExitUnavailable:
		return "unreachable"
	case ExitDamaged:
		return "damaged"
	}
	return "error"
}
