package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/spf13/pflag"
)

// AddFlags registers one flag per key on fs, named after the key
// (--snapshot.compression_default.level), showing the value in defaults (a
// struct or pointer of the schema's type, or nil) as the flag's default and
// the env variable in its usage. A flag only records what was typed and
// checks that it parses; Load applies it, above the env and the file. A
// secret's default is never shown, and its usage advises the env or the
// file, since flags are visible to every user in the process list.
func (s *Schema) AddFlags(fs *pflag.FlagSet, defaults any) error {
	var root reflect.Value
	if defaults != nil {
		v := reflect.ValueOf(defaults)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Type() != s.root {
			return fmt.Errorf("config: flag defaults of type %T: want %s", defaults, s.root)
		}
		root = v
	}
	for _, k := range s.keys {
		if fs.Lookup(k.Flag) != nil {
			return fmt.Errorf("config: flag --%s is already defined", k.Flag)
		}
		def := ""
		if root.IsValid() {
			if fv, ok := field(root, k.index, false); ok {
				def = formatLeaf(fv)
			}
		}
		usage := k.Help
		if usage != "" {
			usage += " "
		}
		if k.Secret {
			def = ""
			usage += fmt.Sprintf("(env %s; a secret: prefer the env or a file, flags show in ps)", k.Env)
		} else {
			usage += fmt.Sprintf("(env %s)", k.Env)
		}
		f := fs.VarPF(&flagValue{key: k, shown: def}, k.Flag, "", usage)
		f.DefValue = def
		if k.typ.Kind() == reflect.Bool || (k.typ.Kind() == reflect.Pointer && k.typ.Elem().Kind() == reflect.Bool) {
			f.NoOptDefVal = "true" // --flag alone means true, as for pflag's bools
		}
	}
	return nil
}

// flagValue is a pflag.Value that keeps what was typed. Set parses it
// against the key's type right away, so cobra reports a bad flag as a usage
// error naming the flag before anything runs.
type flagValue struct {
	key   Key
	shown string
	raws  []string
	set   bool
}

var _ pflag.Value = (*flagValue)(nil)

func (f *flagValue) String() string {
	if !f.set {
		return f.shown
	}
	return f.key.shown(f.raws)
}

func (f *flagValue) Set(raw string) error {
	raws := []string{raw}
	if f.key.isList() {
		raws = splitList(raw)
	}
	scratch := reflect.New(f.key.typ).Elem()
	if err := setLeaf(scratch, raws); err != nil {
		return err
	}
	if f.key.isList() && f.set {
		f.raws = append(f.raws, raws...) // a repeated list flag appends
	} else {
		f.raws = raws
	}
	f.set = true
	return nil
}

func (f *flagValue) Type() string {
	t := f.key.Type
	if strings.HasPrefix(t, "[]") {
		return strings.TrimPrefix(t, "[]") + "s"
	}
	return t
}
