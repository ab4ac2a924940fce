package api

import (
	"fmt"
	"regexp"
)

// IDPattern is the pattern of every id and name in both APIs (the ID and Name
// schemas of openapi.yaml; a test keeps them equal). It admits no dot, slash
// or upper case, so an id that passed it can be used in a file path or an
// object key as it is.
const IDPattern = `^[a-z0-9][a-z0-9-]{0,62}$`

var idRE = regexp.MustCompile(IDPattern)

// ValidateID checks an id taken from a path or a body before anything is
// looked up or built from it. The error matches ErrInvalidRequest.
func ValidateID(kind, id string) error {
	if !idRE.MatchString(id) {
		return NewError(ErrorCodeInvalidRequest, "invalid %s id %q: want 1-63 lower-case letters, digits or dashes, not starting with a dash", kind, truncate(id, 80))
	}
	return nil
}

// ValidateName checks a user-chosen name (instances, snapshots). The error
// matches ErrInvalidRequest.
func ValidateName(field, name string) error {
	if !idRE.MatchString(name) {
		return NewError(ErrorCodeInvalidRequest, "invalid %s %q: want 1-63 lower-case letters, digits or dashes, not starting with a dash", field, truncate(name, 80))
	}
	return nil
}

// truncate keeps hostile input out of error messages beyond a useful prefix.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:n], len(s))
}
