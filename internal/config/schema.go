package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
)

// DefaultEnvPrefix prefixes every environment variable name.
const DefaultEnvPrefix = "HANGAR"

// Key is one settable leaf of a Config struct.
type Key struct {
	// Name is the dotted YAML path, such as "snapshot.compression_default.level".
	Name string
	// Env is the environment variable, such as
	// "HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_LEVEL".
	Env string
	// Flag is the long flag name without dashes; it equals Name.
	Flag string
	// Help is the field's `help` tag, empty when it has none.
	Help string
	// Type names the kind of value expected ("string", "int", "duration",
	// "bool", "[]string" ...), for help text and errors.
	Type string
	// Secret is set when the field's type has a Reveal() string method
	// (Secret, storage/s3.Secret): its value is never printed or echoed.
	Secret bool

	index []int        // field indexes from the root struct
	typ   reflect.Type // the field's type (possibly a pointer or a slice)
}

// Schema is the set of keys of one Config struct type, in field order.
type Schema struct {
	root      reflect.Type
	envPrefix string
	keys      []Key
	byName    map[string]int
	// groups holds every dotted prefix that names a struct, so that the file
	// loader can tell "a mapping here" from "an unknown key".
	groups map[string]bool
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
	revealer        = reflect.TypeFor[interface{ Reveal() string }]()
)

// NewSchema derives the keys of cfg, a struct or a pointer to one, with env
// names under DefaultEnvPrefix. It fails on a field type it cannot load, on a
// key segment that is not lower-case letters, digits and underscores, and on
// two keys that would share a name or an environment variable.
func NewSchema(cfg any) (*Schema, error) {
	return NewSchemaPrefix(cfg, DefaultEnvPrefix)
}

// NewSchemaPrefix is NewSchema with another environment prefix ("" for none).
func NewSchemaPrefix(cfg any, envPrefix string) (*Schema, error) {
	t := reflect.TypeOf(cfg)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("config: schema of %T: want a struct or a pointer to one", cfg)
	}
	s := &Schema{root: t, envPrefix: envPrefix, byName: map[string]int{}, groups: map[string]bool{}}
	var errs []error
	s.walk(t, "", nil, map[reflect.Type]bool{}, &errs)
	envs := map[string]string{}
	for i, k := range s.keys {
		if j, dup := s.byName[k.Name]; dup {
			errs = append(errs, fmt.Errorf("config: %s: key %q is defined twice (fields %v and %v)", t, k.Name, s.keys[j].index, k.index))
			continue
		}
		if s.groups[k.Name] {
			errs = append(errs, fmt.Errorf("config: %s: key %q is both a value and a group", t, k.Name))
		}
		if other, dup := envs[k.Env]; dup {
			errs = append(errs, fmt.Errorf("config: %s: keys %q and %q share the environment variable %s", t, other, k.Name, k.Env))
		}
		envs[k.Env] = k.Name
		s.byName[k.Name] = i
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Keys returns the schema's keys in field order.
func (s *Schema) Keys() []Key { return append([]Key(nil), s.keys...) }

// Key returns the key with the dotted name.
func (s *Schema) Key(name string) (Key, bool) {
	i, ok := s.byName[name]
	if !ok {
		return Key{}, false
	}
	return s.keys[i], true
}

func (s *Schema) walk(t reflect.Type, prefix string, index []int, seen map[reflect.Type]bool, errs *[]error) {
	if seen[t] {
		*errs = append(*errs, fmt.Errorf("config: %s: recursive type %s at %q", s.root, t, prefix))
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		seg, inline, skip := fieldSegment(f)
		if skip {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		ft := f.Type
		if inline {
			st := ft
			if st.Kind() == reflect.Pointer {
				st = st.Elem()
			}
			if st.Kind() != reflect.Struct || isLeaf(ft) {
				*errs = append(*errs, fmt.Errorf("config: %s: field %s: only a struct can be inlined", s.root, f.Name))
				continue
			}
			s.walk(st, prefix, idx, seen, errs)
			continue
		}
		if err := validSegment(seg); err != nil {
			*errs = append(*errs, fmt.Errorf("config: %s: field %s: %w", s.root, f.Name, err))
			continue
		}
		name := seg
		if prefix != "" {
			name = prefix + "." + seg
		}
		if isLeaf(ft) {
			s.keys = append(s.keys, Key{
				Name:   name,
				Env:    s.envName(name),
				Flag:   name,
				Help:   f.Tag.Get("help"),
				Type:   typeName(ft),
				Secret: isSecret(ft),
				index:  idx,
				typ:    ft,
			})
			continue
		}
		st := ft
		if st.Kind() == reflect.Pointer {
			st = st.Elem()
		}
		if st.Kind() != reflect.Struct {
			*errs = append(*errs, fmt.Errorf("config: %s: field %s (%s): type %s cannot be loaded from YAML, env and flags; tag it yaml:\"-\"", s.root, f.Name, name, ft))
			continue
		}
		s.groups[name] = true
		s.walk(st, name, idx, seen, errs)
	}
}

func (s *Schema) envName(name string) string {
	v := strings.ToUpper(strings.ReplaceAll(name, ".", "_"))
	if s.envPrefix == "" {
		return v
	}
	return s.envPrefix + "_" + v
}

// fieldSegment returns the key segment of a field: the yaml tag's name, else
// the json tag's, else the Go name in snake_case.
func fieldSegment(f reflect.StructField) (seg string, inline, skip bool) {
	for _, tagName := range []string{"yaml", "json"} {
		tag, ok := f.Tag.Lookup(tagName)
		if !ok {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			return "", false, true
		}
		for o := range strings.SplitSeq(opts, ",") {
			if o == "inline" {
				return "", true, false
			}
		}
		if name != "" {
			return name, false, false
		}
		break // a tag with options only keeps the Go name, as yaml and json do
	}
	if f.Anonymous {
		return "", true, false
	}
	return snakeCase(f.Name), false, false
}

// snakeCase turns a Go name into a key segment: DataDir -> data_dir,
// QEMU -> qemu, HTTPAddr -> http_addr, S3Bucket -> s3_bucket.
func snakeCase(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			nextLower := i > 0 && i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// validSegment keeps keys mappable to env names and flags both ways.
func validSegment(seg string) error {
	if seg == "" {
		return errors.New("empty key segment")
	}
	for _, c := range seg {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return fmt.Errorf("key segment %q: use lower-case letters, digits and underscores", seg)
		}
	}
	return nil
}

// isLeaf reports whether a field of type t holds one value (as opposed to a
// group of keys).
func isLeaf(t reflect.Type) bool {
	if t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8 {
		return isScalar(t.Elem())
	}
	if t.Kind() == reflect.Pointer && !implementsText(t.Elem()) && t.Elem().Kind() != reflect.Struct {
		return isScalar(t.Elem())
	}
	return isScalar(t)
}

func implementsText(t reflect.Type) bool {
	return t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
}

// isScalar reports whether one value of type t is parsed from one string.
func isScalar(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		return implementsText(t.Elem())
	}
	if implementsText(t) || t == durationType {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func isSecret(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Implements(revealer)
}

func typeName(t reflect.Type) string {
	switch {
	case t.Kind() == reflect.Slice:
		return "[]" + typeName(t.Elem())
	case t.Kind() == reflect.Pointer && !implementsText(t):
		return typeName(t.Elem())
	case t == durationType:
		return "duration"
	case implementsText(t):
		if t.Name() != "" {
			return strings.ToLower(t.Name()) // slog.Level: "level", a Duration type: "duration"
		}
		return "text"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "uint"
	case reflect.Float32, reflect.Float64:
		return "float"
	}
	return t.Kind().String()
}
