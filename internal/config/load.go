package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Sentinels matched with errors.Is by every error of their kind.
var (
	// ErrUnknownKey: the file has a key the Config does not.
	ErrUnknownKey = errors.New("unknown key")
	// ErrInvalidValue: a value does not parse as its key's type, or the
	// file's structure does not match the Config's (a mapping where a value
	// is expected, or the reverse).
	ErrInvalidValue = errors.New("invalid value")
	// ErrInvalid: the loaded Config failed its Validate.
	ErrInvalid = errors.New("invalid configuration")
)

// Sources says where Load reads the layers above the defaults.
type Sources struct {
	// File is the YAML file's path; "" loads no file. A missing file is an
	// error: a path was given, so the operator expects it to be read.
	File string
	// LookupEnv reads environment variables; nil means os.LookupEnv. A
	// variable that is set (even to "") overrides the file.
	LookupEnv func(string) (string, bool)
	// Flags is the parsed flag set that AddFlags registered the schema's
	// flags on; only flags given on the command line (Changed) override.
	// nil means no flags.
	Flags *pflag.FlagSet
}

// ValueError is a value that does not parse, or a file whose structure does
// not match the Config.
type ValueError struct {
	Key    string // dotted key
	Source string // "server.yaml:12", "env HANGAR_X", "flag --x"
	Value  string // the bad value, already redacted for a secret
	Err    error  // what was expected
}

func (e *ValueError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s: %v", e.Source, e.Key, e.Err)
	}
	return fmt.Sprintf("%s: %s: invalid value %q: %v", e.Source, e.Key, e.Value, e.Err)
}

// Is makes errors.Is(err, ErrInvalidValue) hold.
func (e *ValueError) Is(target error) bool { return target == ErrInvalidValue }

// Unwrap returns the parse error.
func (e *ValueError) Unwrap() error { return e.Err }

// UnknownKeyError is a key in the file that the Config does not have.
type UnknownKeyError struct {
	Key     string // dotted key as written in the file
	Source  string // "server.yaml:3"
	Suggest string // the nearest known key, if any is close
}

func (e *UnknownKeyError) Error() string {
	msg := fmt.Sprintf("%s: unknown key %q", e.Source, e.Key)
	if e.Suggest != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", e.Suggest)
	}
	return msg
}

// Is makes errors.Is(err, ErrUnknownKey) hold.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrUnknownKey }

// Validator is what Load calls after loading.
type Validator interface{ Validate() error }

// Load fills dst, a pointer to a struct of the schema's type that already
// holds the defaults, from the file, then the environment, then the flags,
// and then calls dst's Validate (if it has one). Every problem of every layer
// is reported at once; when a layer has problems, Validate is not called
// (the values are not what the operator meant) and dst may be partly
// loaded.
func (s *Schema) Load(dst any, src Sources) error {
	root, err := s.rootValue(dst)
	if err != nil {
		return err
	}
	var errs []error
	if src.File != "" {
		errs = append(errs, s.loadFile(root, src.File)...)
	}
	lookup := src.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	for _, k := range s.keys {
		raw, ok := lookup(k.Env)
		if !ok {
			continue
		}
		raws := []string{raw}
		if k.isList() {
			raws = splitList(raw)
		}
		if err := s.set(root, k, raws, "env "+k.Env); err != nil {
			errs = append(errs, err)
		}
	}
	if src.Flags != nil {
		for _, k := range s.keys {
			f := src.Flags.Lookup(k.Flag)
			if f == nil || !f.Changed {
				continue
			}
			fv, ok := f.Value.(*flagValue)
			if !ok {
				errs = append(errs, fmt.Errorf("config: flag --%s was not registered by AddFlags", k.Flag))
				continue
			}
			if err := s.set(root, k, fv.raws, "flag --"+k.Flag); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if v, ok := dst.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return nil
}

func (s *Schema) rootValue(dst any) (reflect.Value, error) {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Type() != s.root {
		return reflect.Value{}, fmt.Errorf("config: load into %T: want a non-nil *%s", dst, s.root)
	}
	return v.Elem(), nil
}

func (s *Schema) set(root reflect.Value, k Key, raws []string, source string) error {
	if !k.isList() && len(raws) == 0 {
		raws = []string{""}
	}
	fv, _ := field(root, k.index, true)
	if err := setLeaf(fv, raws); err != nil {
		return &ValueError{Key: k.Name, Source: source, Value: k.shown(raws), Err: err}
	}
	return nil
}

// shown is a value as it may appear in an error message.
func (k Key) shown(raws []string) string {
	v := strings.Join(raws, ",")
	if k.Secret && v != "" {
		return Redacted
	}
	if v == "" {
		return `""` // keep ValueError from dropping the "invalid value" part
	}
	return v
}

// loadFile applies a YAML file: one document whose top level is a mapping
// (an empty file is allowed and sets nothing).
func (s *Schema) loadFile(root reflect.Value, path string) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{fmt.Errorf("read config file: %w", err)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return []error{fmt.Errorf("%s: %w: %v", path, ErrInvalidValue, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return []error{fmt.Errorf("%s: %w: more than one YAML document", path, ErrInvalidValue)}
	}
	top := &doc
	if top.Kind == yaml.DocumentNode {
		if len(top.Content) == 0 {
			return nil
		}
		top = top.Content[0]
	}
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil
	}
	var errs []error
	s.loadMapping(root, path, "", top, &errs)
	return errs
}

func (s *Schema) loadMapping(root reflect.Value, path, prefix string, n *yaml.Node, errs *[]error) {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		what := "the top level"
		if prefix != "" {
			what = prefix
		}
		*errs = append(*errs, &ValueError{Key: what, Source: pos(path, n), Err: fmt.Errorf("want a mapping of keys, got %s", kindName(n))})
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], resolveAlias(n.Content[i+1])
		if kn.Kind == yaml.ScalarNode && kn.Value == "<<" && kn.Tag == "!!merge" {
			// A merge key lends the aliased mapping's keys to this one.
			for _, m := range mergeSources(vn) {
				s.loadMapping(root, path, prefix, m, errs)
			}
			continue
		}
		name := kn.Value
		if prefix != "" {
			name = prefix + "." + kn.Value
		}
		if line, dup := seen[kn.Value]; dup {
			*errs = append(*errs, &ValueError{Key: name, Source: pos(path, kn), Err: fmt.Errorf("set twice (first at line %d)", line)})
			continue
		}
		seen[kn.Value] = kn.Line
		if s.groups[name] {
			if vn.Kind == yaml.ScalarNode && vn.Tag == "!!null" {
				continue
			}
			s.loadMapping(root, path, name, vn, errs)
			continue
		}
		i, ok := s.byName[name]
		if !ok {
			*errs = append(*errs, &UnknownKeyError{Key: name, Source: pos(path, kn), Suggest: s.suggest(name)})
			continue
		}
		k := s.keys[i]
		var raws []string
		switch {
		case vn.Kind == yaml.ScalarNode && vn.Tag == "!!null":
			continue // "key:" with no value keeps the default
		case vn.Kind == yaml.ScalarNode && !k.isList():
			raws = []string{vn.Value}
		case vn.Kind == yaml.SequenceNode && k.isList():
			raws = []string{}
			bad := false
			for _, item := range vn.Content {
				item = resolveAlias(item)
				if item.Kind != yaml.ScalarNode {
					*errs = append(*errs, &ValueError{Key: name, Source: pos(path, item), Err: fmt.Errorf("want a list of %s, got an item that is %s", strings.TrimPrefix(k.Type, "[]"), kindName(item))})
					bad = true
					break
				}
				raws = append(raws, item.Value)
			}
			if bad {
				continue
			}
		case k.isList():
			*errs = append(*errs, &ValueError{Key: name, Source: pos(path, vn), Err: fmt.Errorf("want a list (%s), got %s", k.Type, kindName(vn))})
			continue
		default:
			*errs = append(*errs, &ValueError{Key: name, Source: pos(path, vn), Err: fmt.Errorf("want a %s value, got %s", k.Type, kindName(vn))})
			continue
		}
		if err := s.set(root, k, raws, pos(path, vn)); err != nil {
			*errs = append(*errs, err)
		}
	}
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func mergeSources(n *yaml.Node) []*yaml.Node {
	if n.Kind == yaml.SequenceNode {
		out := make([]*yaml.Node, 0, len(n.Content))
		for _, c := range n.Content {
			out = append(out, resolveAlias(c))
		}
		return out
	}
	return []*yaml.Node{n}
}

func pos(path string, n *yaml.Node) string {
	if n == nil || n.Line == 0 {
		return path
	}
	return fmt.Sprintf("%s:%d", path, n.Line)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "something else"
}

// suggest returns the known key or group nearest to name, if it is close
// enough to be a typo.
func (s *Schema) suggest(name string) string {
	var cands []string
	for _, k := range s.keys {
		cands = append(cands, k.Name)
	}
	for g := range s.groups {
		cands = append(cands, g)
	}
	sort.Strings(cands)
	best, bestD := "", -1
	for _, c := range cands {
		if d := levenshtein(name, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	// A typo is a few edits away; a key with a suffix added (listen_addr
	// for listen) is a prefix away.
	if bestD < 0 || (bestD > max(2, len(name)/4) && !strings.HasPrefix(name, best)) {
		return ""
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
