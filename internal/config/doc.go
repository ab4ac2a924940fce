// Package config loads one process's configuration into a component's Config
// struct from four layers with one precedence:
//
//	flag > environment variable > YAML file > defaults
//
// Defaults are whatever the struct holds before Load (the component keeps
// them in one place, its own constructor or WithDefaults). Every key is
// settable all three ways, with names derived from the struct by reflection,
// so a field added to a Config is configurable without touching this package
// or the command line:
//
//	YAML key   snapshot.compression_default.algorithm   (nested mappings)
//	env var    HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_ALGORITHM
//	flag       --snapshot.compression_default.algorithm
//
// A field's key segment is its yaml tag, else its json tag, else its Go name
// in snake_case (DataDir -> data_dir); "-" skips it, and an embedded struct
// without a name (or tagged ",inline") lends its keys to its parent. Nested
// structs and pointers to structs become dotted prefixes; a nil pointer is
// allocated when one of its keys is set.
//
// Leaves are strings (any named string type, such as Secret), bools, ints,
// uints, floats, time.Duration, types implementing encoding.TextUnmarshaler
// (slog.Level, netip.Addr ...), pointers to those (nil means "not set"), and
// slices of those (a YAML sequence; comma-separated in env and flags, and a
// repeated flag appends). Any other field type is a programming error that
// NewSchema reports, so it is found by the first test, not in production.
//
// Strictness: an unknown key in the file is an error that names the key (and
// suggests the nearest known one); a value that does not parse is an error
// that names the key, the source (file:line, env var or flag) and the bad
// value (never a secret's). All problems of all layers are reported at once.
// After loading, Load calls the struct's Validate() error, if it has one.
//
// Secrets: Secret is a string type that prints, marshals and logs as
// "[redacted]"; Print writes the effective configuration as YAML with every
// secret redacted (any field whose type has a Reveal() string method, which
// includes storage/s3.Secret), for `hangar <daemon> --print-config`.
package config
