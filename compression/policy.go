package compression

import (
	"errors"
	"fmt"
	"strings"
)

// Policy is what an operator asks for at one level of precedence: a request
// override (standby or snapshot body), an instance's snapshot_policy, or the
// server default (snapshot.compression_default). It is the JSON object found
// under "compression" in each of those places. Every field is optional; a
// policy with no field set is "not set" and defers to the next level.
type Policy struct {
	// Enabled, when false, turns compression off at this level whatever
	// the other fields say; when true without Algorithm it means zstd at
	// its default level.
	Enabled *bool `json:"enabled,omitempty"`
	// Algorithm is zstd, lz4 or none, case-insensitive.
	Algorithm string `json:"algorithm,omitempty"`
	// Level is within LevelRange(Algorithm); it needs Algorithm. Without it
	// the algorithm's DefaultLevel applies.
	Level *int `json:"level,omitempty"`
}

// IsSet reports whether p says anything: non-nil with at least one field set.
func (p *Policy) IsSet() bool {
	return p != nil && (p.Enabled != nil || p.Algorithm != "" || p.Level != nil)
}

// ErrInvalidPolicy is matched (errors.Is) by every *ValidationError.
var ErrInvalidPolicy = errors.New("invalid compression policy")

// Where a policy came from, as recorded in ValidationError.Source by Resolve.
// The API layer answers a request problem with invalid_snapshot_compression
// and an instance problem with invalid_snapshot_policy.
const (
	SourceRequest       = "request"
	SourceInstance      = "instance"
	SourceServerDefault = "server default"
)

// FieldError is one problem with one field of a policy. Field is the JSON
// path within the policy's parent ("compression.level"); Message names the
// allowed values or range.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (f FieldError) String() string { return f.Field + ": " + f.Message }

// ValidationError lists every problem found in a policy, in field order.
type ValidationError struct {
	// Source is empty from Validate; Resolve sets it to SourceRequest,
	// SourceInstance or SourceServerDefault.
	Source   string
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid ")
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteByte(' ')
	}
	b.WriteString("compression policy: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

func (e *ValidationError) Unwrap() error { return ErrInvalidPolicy }

const (
	fieldEnabled   = "compression.enabled"
	fieldAlgorithm = "compression.algorithm"
	fieldLevel     = "compression.level"
)

// Validate reports every problem with p at once as a *ValidationError, or
// nil. A nil policy and an empty one are valid (they are simply not set).
// Problems: an unknown algorithm; a level outside the algorithm's range (or
// any level but 0 for none); a level without an algorithm; algorithm none
// with enabled: true, which contradict each other.
func (p *Policy) Validate() error {
	if p == nil {
		return nil
	}
	var probs []FieldError
	add := func(field, format string, args ...any) {
		probs = append(probs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	var alg Algorithm
	if p.Algorithm != "" {
		a, err := ParseAlgorithm(p.Algorithm)
		if err != nil {
			add(fieldAlgorithm, "unknown algorithm %q (want zstd, lz4 or none)", p.Algorithm)
		} else {
			alg = a
			if a == None && p.Enabled != nil && *p.Enabled {
				add(fieldAlgorithm, "%q contradicts %s: true (use enabled: false or another algorithm)", p.Algorithm, fieldEnabled)
			}
		}
	}
	if p.Level != nil {
		l := *p.Level
		switch {
		case p.Algorithm == "":
			add(fieldLevel, "%d is set without %s (levels: zstd %d-%d, lz4 %d-%d)", l, fieldAlgorithm,
				ZstdMinLevel, ZstdMaxLevel, LZ4MinLevel, LZ4MaxLevel)
		case alg == "":
			// Algorithm unknown and already reported: no range to check.
		case alg == None && l != 0:
			add(fieldLevel, "%d is not allowed for none (it takes no level)", l)
		default:
			if lo, hi := LevelRange(alg); l < lo || l > hi {
				add(fieldLevel, "%d is out of range for %s (%d-%d)", l, alg, lo, hi)
			}
		}
	}
	if len(probs) > 0 {
		return &ValidationError{Problems: probs}
	}
	return nil
}

// Setting is a resolved, concrete compression choice: an algorithm and a
// level within its range; compression disabled is {None, 0}. The zero
// Setting names no algorithm and its Codec fails: build Settings with
// Resolve, or from a manifest.
type Setting struct {
	Algorithm Algorithm
	Level     int
}

// Codec returns the shared codec for s.
func (s Setting) Codec() (Codec, error) { return New(s.Algorithm, s.Level) }

// String is "zstd:3", "lz4:0" or "none".
func (s Setting) String() string {
	if s.Algorithm == None {
		return string(None)
	}
	return fmt.Sprintf("%s:%d", s.Algorithm, s.Level)
}

// Resolve picks the compression a snapshot uses from the three levels of
// precedence of DESIGN §4: request override > instance snapshot_policy >
// server default. Any of them may be nil.
//
// First every non-nil policy is validated, highest precedence first; the
// first invalid one is returned as a *ValidationError whose Source names
// it, so a broken policy is reported even when a higher one would win, and
// before the caller changes any state.
//
// Then the first policy that is set (IsSet: non-nil with any field set)
// wins, and only its fields count; fields are never merged across levels:
//
//   - enabled: false → {None, 0}, whatever its algorithm and level say;
//   - algorithm A (with or without enabled: true) → A at the policy's level,
//     or at DefaultLevel(A) when the level is absent; none → {None, 0};
//   - enabled: true alone → {Zstd, DefaultLevel(Zstd)} = zstd:1.
//
// When no policy is set the result is {None, 0}: no compression.
func Resolve(request, instance, serverDefault *Policy) (Setting, error) {
	levels := []struct {
		source string
		p      *Policy
	}{{SourceRequest, request}, {SourceInstance, instance}, {SourceServerDefault, serverDefault}}
	for _, l := range levels {
		if err := l.p.Validate(); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				ve.Source = l.source
			}
			return Setting{}, err
		}
	}
	for _, l := range levels {
		if l.p.IsSet() {
			return l.p.setting(), nil
		}
	}
	return Setting{Algorithm: None}, nil
}

// setting turns a valid, set policy into its Setting.
func (p *Policy) setting() Setting {
	if p.Enabled != nil && !*p.Enabled {
		return Setting{Algorithm: None}
	}
	alg := Zstd
	if p.Algorithm != "" {
		alg, _ = ParseAlgorithm(p.Algorithm) // validated by the caller
	}
	if alg == None {
		return Setting{Algorithm: None}
	}
	level := DefaultLevel(alg)
	if p.Level != nil {
		level = *p.Level
	}
	return Setting{Algorithm: alg, Level: level}
}
