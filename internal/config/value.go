package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// parseScalar parses raw into a new value of type t (a scalar type as
// isScalar accepts, possibly a pointer to a TextUnmarshaler). The error says
// what was expected, without quoting raw (the caller decides whether the
// value may be shown).
func parseScalar(t reflect.Type, raw string) (reflect.Value, error) {
	if t.Kind() == reflect.Pointer {
		v := reflect.New(t.Elem())
		if err := v.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(raw)); err != nil {
			return reflect.Value{}, err
		}
		return v, nil
	}
	v := reflect.New(t).Elem()
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if err := u.UnmarshalText([]byte(raw)); err != nil {
			return reflect.Value{}, err
		}
		return v, nil
	}
	s := strings.TrimSpace(raw)
	if t == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return reflect.Value{}, errors.New("want a duration such as 500ms, 30s or 5m")
		}
		v.SetInt(int64(d))
		return v, nil
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(raw) // strings keep their spaces
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return reflect.Value{}, errors.New("want true or false")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 0, t.Bits())
		if err != nil {
			return reflect.Value{}, numError(err, "an integer", t)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 0, t.Bits())
		if err != nil {
			return reflect.Value{}, numError(err, "a non-negative integer", t)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, t.Bits())
		if err != nil {
			return reflect.Value{}, numError(err, "a number", t)
		}
		v.SetFloat(n)
	default:
		return reflect.Value{}, fmt.Errorf("unsupported type %s", t)
	}
	return v, nil
}

func numError(err error, want string, t reflect.Type) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("out of range for %s", t.Kind())
	}
	return errors.New("want " + want)
}

// setLeaf parses raws into the leaf field v (addressable): one string for a
// scalar or a pointer to one, any number for a slice.
func setLeaf(v reflect.Value, raws []string) error {
	t := v.Type()
	switch {
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		out := reflect.MakeSlice(t, 0, len(raws))
		for i, raw := range raws {
			e, err := parseScalar(t.Elem(), raw)
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			out = reflect.Append(out, e)
		}
		v.Set(out)
	case t.Kind() == reflect.Pointer && !implementsText(t):
		e, err := parseScalar(t.Elem(), raws[0])
		if err != nil {
			return err
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(e)
		v.Set(p)
	default:
		e, err := parseScalar(t, raws[0])
		if err != nil {
			return err
		}
		v.Set(e)
	}
	return nil
}

// isList reports whether the key takes several values.
func (k Key) isList() bool {
	return k.typ.Kind() == reflect.Slice && k.typ.Elem().Kind() != reflect.Uint8
}

// splitList splits a comma-separated env or flag value; an empty string is
// an empty list.
func splitList(raw string) []string {
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	parts := strings.Split(raw, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// formatScalar renders one value as it would be written in a file, env var
// or flag. ok is false for a nil pointer (not set).
func formatScalar(v reflect.Value) (s string, ok bool) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "", false
		}
		v = v.Elem() // addressable, so pointer-receiver marshalers are found below
	}
	if r, isSecret := v.Interface().(interface{ Reveal() string }); isSecret {
		if r.Reveal() == "" {
			return "", true
		}
		return Redacted, true
	}
	if v.Type() == durationType {
		return time.Duration(v.Int()).String(), true
	}
	if m, isText := v.Interface().(encoding.TextMarshaler); isText {
		b, err := m.MarshalText()
		if err != nil {
			return fmt.Sprintf("<%v>", err), true
		}
		return string(b), true
	}
	if v.CanAddr() {
		if m, isText := v.Addr().Interface().(encoding.TextMarshaler); isText {
			if b, err := m.MarshalText(); err == nil {
				return string(b), true
			}
		}
	}
	switch v.Kind() {
	case reflect.String:
		return v.String(), true
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), true
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits()), true
	}
	return fmt.Sprint(v.Interface()), true
}

// formatLeaf renders a leaf for help text: lists comma-separated, "" for
// unset.
func formatLeaf(v reflect.Value) string {
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i], _ = formatScalar(v.Index(i))
		}
		return strings.Join(parts, ",")
	}
	s, _ := formatScalar(v)
	return s
}

// field walks from the root struct value to the field at index, allocating
// nil struct pointers on the way when alloc is set. ok is false when a nil
// pointer is met and alloc is not set.
func field(root reflect.Value, index []int, alloc bool) (reflect.Value, bool) {
	v := root
	for _, i := range index {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !alloc {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v, true
}
