package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Print writes cfg (a struct or pointer of the schema's type) as a YAML file
// that Load would read back to the same values, every key present, in field
// order, with every secret redacted and a nil pointer written as null (not
// set). It is what `--print-config` shows: the effective configuration.
func (s *Schema) Print(w io.Writer, cfg any) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if !v.IsValid() || v.Type() != s.root {
		return fmt.Errorf("config: print %T: want %s", cfg, s.root)
	}
	doc := &yaml.Node{Kind: yaml.MappingNode}
	groups := map[string]*yaml.Node{"": doc}
	for _, k := range s.keys {
		parent := groupNode(groups, k.Name)
		leaf := k.Name[strings.LastIndex(k.Name, ".")+1:]
		parent.Content = append(parent.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: leaf},
			leafNode(k, v))
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("print config: %w", err)
	}
	return enc.Close()
}

// groupNode returns the mapping node that holds the key's last segment,
// creating the mappings of its prefixes in order of first appearance.
func groupNode(groups map[string]*yaml.Node, name string) *yaml.Node {
	i := strings.LastIndex(name, ".")
	if i < 0 {
		return groups[""]
	}
	prefix := name[:i]
	if g, ok := groups[prefix]; ok {
		return g
	}
	parent := groupNode(groups, prefix)
	g := &yaml.Node{Kind: yaml.MappingNode}
	parent.Content = append(parent.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: prefix[strings.LastIndex(prefix, ".")+1:]}, g)
	groups[prefix] = g
	return g
}

func leafNode(k Key, root reflect.Value) *yaml.Node {
	null := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	fv, ok := field(root, k.index, false)
	if !ok {
		return null
	}
	scalar := func(v reflect.Value) *yaml.Node {
		s, set := formatScalar(v)
		if !set {
			return null
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: scalarTag(v), Value: s}
	}
	if k.isList() {
		if fv.IsNil() {
			return null // unset, as opposed to an explicit empty list
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range fv.Len() {
			seq.Content = append(seq.Content, scalar(fv.Index(i)))
		}
		return seq
	}
	return scalar(fv)
}

// scalarTag keeps strings quoted where YAML would read them as another type
// ("true", "10") and numbers and bools plain.
func scalarTag(v reflect.Value) string {
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Type() == durationType {
		return "!!str"
	}
	switch v.Kind() {
	case reflect.Bool:
		return "!!bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if implementsText(v.Type()) {
			return "!!str"
		}
		return "!!int"
	case reflect.Float32, reflect.Float64:
		return "!!float"
	}
	return "!!str"
}
