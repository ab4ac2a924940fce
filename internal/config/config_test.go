package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/hangar-vm/hangar/internal/config"
)

type compressionPolicy struct {
	Enabled   *bool  `json:"enabled,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
	Level     *int   `json:"level,omitempty"`
}

type storeConfig struct {
	Endpoint  string        `json:"endpoint"`
	SecretKey config.Secret `json:"secret_key,omitempty"`
}

type Common struct {
	LogLevel slog.Level `yaml:"log_level" help:"debug, info, warn or error"`
}

type testConfig struct {
	Common                 // inlined: log_level
	Listen   string        `yaml:"listen" help:"address to listen on"`
	Token    config.Secret `yaml:"token"`
	Snapshot struct {
		CompressionDefault *compressionPolicy `yaml:"compression_default"`
		ChunkSize          uint32             `yaml:"chunk_size"`
	} `yaml:"snapshot"`
	Timeout  time.Duration
	Hosts    []string     `yaml:"hosts"`
	Ratio    float64      `yaml:"ratio"`
	Store    *storeConfig `yaml:"store"`
	DataDir  string       // no tag: data_dir
	Logger   *slog.Logger `yaml:"-"`
	Disabled bool         `yaml:"disabled"`
}

func defaults() *testConfig {
	c := &testConfig{Listen: "127.0.0.1:7070", Timeout: 30 * time.Second, Ratio: 0.5}
	c.Snapshot.ChunkSize = 4 << 20
	return c
}

// Validate reports every problem at once, as the components' Configs do.
func (c *testConfig) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen is empty"))
	}
	if c.Snapshot.ChunkSize&(c.Snapshot.ChunkSize-1) != 0 {
		errs = append(errs, fmt.Errorf("snapshot.chunk_size %d is not a power of two", c.Snapshot.ChunkSize))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s is not positive", c.Timeout))
	}
	return errors.Join(errs...)
}

func schema(t *testing.T) *config.Schema {
	t.Helper()
	s, err := config.NewSchema(&testConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// load runs the whole path: flags registered and parsed, then Load.
func load(t *testing.T, file string, env map[string]string, args []string) (*testConfig, error) {
	t.Helper()
	s := schema(t)
	cfg := defaults()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	if err := s.AddFlags(fs, cfg); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	src := config.Sources{LookupEnv: envOf(env), Flags: fs}
	if file != "" {
		src.File = writeFile(t, file)
	}
	return cfg, s.Load(cfg, src)
}

func TestNames(t *testing.T) {
	s := schema(t)
	tests := []struct{ key, env, typ string }{
		{"log_level", "HANGAR_LOG_LEVEL", "level"},
		{"listen", "HANGAR_LISTEN", "string"},
		{"token", "HANGAR_TOKEN", "string"},
		{"snapshot.compression_default.enabled", "HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_ENABLED", "bool"},
		{"snapshot.compression_default.algorithm", "HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_ALGORITHM", "string"},
		{"snapshot.compression_default.level", "HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_LEVEL", "int"},
		{"snapshot.chunk_size", "HANGAR_SNAPSHOT_CHUNK_SIZE", "uint"},
		{"timeout", "HANGAR_TIMEOUT", "duration"},
		{"hosts", "HANGAR_HOSTS", "[]string"},
		{"ratio", "HANGAR_RATIO", "float"},
		{"store.endpoint", "HANGAR_STORE_ENDPOINT", "string"},
		{"store.secret_key", "HANGAR_STORE_SECRET_KEY", "string"},
		{"data_dir", "HANGAR_DATA_DIR", "string"},
		{"disabled", "HANGAR_DISABLED", "bool"},
	}
	var names []string
	for _, k := range s.Keys() {
		names = append(names, k.Name)
	}
	var want []string
	for _, tt := range tests {
		want = append(want, tt.key)
	}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("keys\n got %q\nwant %q", names, want)
	}
	for _, tt := range tests {
		k, ok := s.Key(tt.key)
		if !ok || k.Env != tt.env || k.Flag != tt.key || k.Type != tt.typ {
			t.Errorf("%s: got %+v, want env %s type %s", tt.key, k, tt.env, tt.typ)
		}
	}
	for _, secret := range []string{"token", "store.secret_key"} {
		if k, _ := s.Key(secret); !k.Secret {
			t.Errorf("%s not marked secret", secret)
		}
	}
}

func TestSnakeCaseNames(t *testing.T) {
	type names struct {
		DataDir              string
		QEMU                 string
		HTTPAddr             string
		S3Bucket             string
		KeepLocalAfterCommit bool
		MaxMiB               int
		JSONTag              int `json:"from_json"`
		YAMLWins             int `yaml:"from_yaml" json:"not_this"`
		OptsOnly             int `yaml:",omitempty"`
	}
	s, err := config.NewSchema(names{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range s.Keys() {
		got = append(got, k.Name)
	}
	want := []string{"data_dir", "qemu", "http_addr", "s3_bucket", "keep_local_after_commit", "max_mi_b", "from_json", "from_yaml", "opts_only"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestPrecedence(t *testing.T) {
	const key = "snapshot.compression_default.algorithm"
	const env = "HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_ALGORITHM"
	file := func(v string) string { return "snapshot:\n  compression_default:\n    algorithm: " + v + "\n" }
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string // "" means the default (nil policy)
	}{
		{"defaults", "", nil, nil, ""},
		{"file", file("zstd"), nil, nil, "zstd"},
		{"env over default", "", map[string]string{env: "lz4"}, nil, "lz4"},
		{"env over file", file("zstd"), map[string]string{env: "lz4"}, nil, "lz4"},
		{"flag over file", file("zstd"), nil, []string{"--" + key, "none"}, "none"},
		{"flag over env and file", file("zstd"), map[string]string{env: "lz4"}, []string{"--" + key + "=none"}, "none"},
		{"empty env is set", file("zstd"), map[string]string{env: ""}, nil, "<empty>"},
		{"other env ignored", file("zstd"), map[string]string{"HANGAR_SNAPSHOT_COMPRESSION_DEFAULT": "lz4", "SNAPSHOT_COMPRESSION_DEFAULT_ALGORITHM": "lz4"}, nil, "zstd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, tt.file, tt.env, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Snapshot.CompressionDefault
			switch {
			case tt.want == "" && p != nil:
				t.Fatalf("want default nil policy, got %+v", p)
			case tt.want == "<empty>" && (p == nil || p.Algorithm != ""):
				t.Fatalf("want empty algorithm, got %+v", p)
			case tt.want != "" && tt.want != "<empty>" && (p == nil || p.Algorithm != tt.want):
				t.Fatalf("want %q, got %+v", tt.want, p)
			}
		})
	}
}

// TestEveryKeyEveryWay sets each key by file, env and flag alone and checks
// the value arrives, so no key is settable one way only.
func TestEveryKeyEveryWay(t *testing.T) {
	values := map[string]struct {
		raw   string
		check func(*testConfig) bool
	}{
		"log_level": {"warn", func(c *testConfig) bool { return c.LogLevel == slog.LevelWarn }},
		"listen":    {"0.0.0.0:1", func(c *testConfig) bool { return c.Listen == "0.0.0.0:1" }},
		"token":     {"s3cr3t", func(c *testConfig) bool { return c.Token.Reveal() == "s3cr3t" }},
		"snapshot.compression_default.enabled": {"false", func(c *testConfig) bool {
			p := c.Snapshot.CompressionDefault
			return p != nil && p.Enabled != nil && !*p.Enabled
		}},
		"snapshot.compression_default.algorithm": {"lz4", func(c *testConfig) bool { return c.Snapshot.CompressionDefault.Algorithm == "lz4" }},
		"snapshot.compression_default.level":     {"7", func(c *testConfig) bool { p := c.Snapshot.CompressionDefault; return p.Level != nil && *p.Level == 7 }},
		"snapshot.chunk_size":                    {"8388608", func(c *testConfig) bool { return c.Snapshot.ChunkSize == 8<<20 }},
		"timeout":                                {"90s", func(c *testConfig) bool { return c.Timeout == 90*time.Second }},
		"hosts":                                  {"a,b", func(c *testConfig) bool { return reflect.DeepEqual(c.Hosts, []string{"a", "b"}) }},
		"ratio":                                  {"0.25", func(c *testConfig) bool { return c.Ratio == 0.25 }},
		"store.endpoint":                         {"127.0.0.1:9000", func(c *testConfig) bool { return c.Store != nil && c.Store.Endpoint == "127.0.0.1:9000" }},
		"store.secret_key":                       {"k", func(c *testConfig) bool { return c.Store != nil && c.Store.SecretKey == "k" }},
		"data_dir":                               {"/var/lib/hangar", func(c *testConfig) bool { return c.DataDir == "/var/lib/hangar" }},
		"disabled":                               {"true", func(c *testConfig) bool { return c.Disabled }},
	}
	for _, k := range schema(t).Keys() {
		v, ok := values[k.Name]
		if !ok {
			t.Fatalf("no test value for key %s", k.Name)
		}
		yamlValue := v.raw
		if k.Name == "hosts" {
			yamlValue = "[a, b]"
		}
		// Nested YAML for a dotted key.
		parts := strings.Split(k.Name, ".")
		var file strings.Builder
		for i, p := range parts {
			file.WriteString(strings.Repeat("  ", i) + p + ":")
			if i == len(parts)-1 {
				file.WriteString(" " + yamlValue)
			}
			file.WriteString("\n")
		}
		ways := map[string]func() (*testConfig, error){
			"file": func() (*testConfig, error) { return load(t, file.String(), nil, nil) },
			"env":  func() (*testConfig, error) { return load(t, "", map[string]string{k.Env: v.raw}, nil) },
			"flag": func() (*testConfig, error) { return load(t, "", nil, []string{"--" + k.Flag + "=" + v.raw}) },
		}
		for way, do := range ways {
			cfg, err := do()
			if err != nil {
				t.Errorf("%s by %s: %v", k.Name, way, err)
				continue
			}
			if !v.check(cfg) {
				t.Errorf("%s by %s: value did not arrive: %+v", k.Name, way, cfg)
			}
		}
	}
}

func TestBoolFlagAlone(t *testing.T) {
	cfg, err := load(t, "disabled: false\n", nil, []string{"--disabled"})
	if err != nil || !cfg.Disabled {
		t.Fatalf("--disabled alone: %v %+v", err, cfg)
	}
}

func TestListFlagRepeats(t *testing.T) {
	cfg, err := load(t, "hosts: [x]\n", map[string]string{"HANGAR_HOSTS": "y"}, []string{"--hosts", "a,b", "--hosts", "c"})
	if err != nil || !reflect.DeepEqual(cfg.Hosts, []string{"a", "b", "c"}) {
		t.Fatalf("got %v %v", err, cfg.Hosts)
	}
	cfg, err = load(t, "hosts: [x]\n", map[string]string{"HANGAR_HOSTS": ""}, nil)
	if err != nil || len(cfg.Hosts) != 0 {
		t.Fatalf("empty env list: %v %v", err, cfg.Hosts)
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		is   error
		want []string // substrings of the error, all present
	}{
		{"unknown top key", "listen: x\nlisten_addr: y\n", config.ErrUnknownKey, []string{`test.yaml:2: unknown key "listen_addr"`, `did you mean "listen"`}},
		{"unknown nested key", "snapshot:\n  compresion_default:\n    algorithm: zstd\n", config.ErrUnknownKey,
			[]string{`test.yaml:2: unknown key "snapshot.compresion_default"`, `did you mean "snapshot.compression_default"`}},
		{"unknown leaf in pointer group", "store:\n  bucket: b\n", config.ErrUnknownKey, []string{`unknown key "store.bucket"`}},
		{"no suggestion when far", "zzzzzzzzzzzz: 1\n", config.ErrUnknownKey, []string{`unknown key "zzzzzzzzzzzz"`}},
		{"skipped field is unknown", "logger: x\n", config.ErrUnknownKey, []string{`unknown key "logger"`}},
		{"bad int", "snapshot:\n  compression_default:\n    level: high\n", config.ErrInvalidValue,
			[]string{`test.yaml:3: snapshot.compression_default.level: invalid value "high": want an integer`}},
		{"negative uint", "snapshot:\n  chunk_size: -1\n", config.ErrInvalidValue, []string{`snapshot.chunk_size: invalid value "-1": want a non-negative integer`}},
		{"int out of range", "snapshot:\n  chunk_size: 99999999999\n", config.ErrInvalidValue, []string{`invalid value "99999999999": out of range for uint32`}},
		{"bad duration", "timeout: 30\n", config.ErrInvalidValue, []string{`test.yaml:1: timeout: invalid value "30": want a duration`}},
		{"bad bool", "disabled: yes please\n", config.ErrInvalidValue, []string{`disabled: invalid value "yes please": want true or false`}},
		{"bad level", "log_level: loud\n", config.ErrInvalidValue, []string{`log_level: invalid value "loud"`}},
		{"mapping for a value", "listen:\n  host: x\n", config.ErrInvalidValue, []string{`test.yaml:2: listen: want a string value, got a mapping`}},
		{"value for a group", "snapshot: 3\n", config.ErrInvalidValue, []string{`snapshot: want a mapping of keys, got the value "3"`}},
		{"scalar for a list", "hosts: a\n", config.ErrInvalidValue, []string{`hosts: want a list ([]string), got the value "a"`}},
		{"nested item in list", "hosts: [[a]]\n", config.ErrInvalidValue, []string{`hosts: want a list of string, got an item that is a list`}},
		{"duplicate key", "listen: a\nlisten: b\n", config.ErrInvalidValue, []string{`test.yaml:2: listen: set twice (first at line 1)`}},
		{"top level list", "- a\n", config.ErrInvalidValue, []string{`the top level: want a mapping`}},
		{"two documents", "listen: a\n---\nlisten: b\n", config.ErrInvalidValue, []string{"more than one YAML document"}},
		{"syntax", "listen: [a\n", config.ErrInvalidValue, []string{"test.yaml"}},
		{"bad secret not echoed", "store:\n  secret_key: [a]\n", config.ErrInvalidValue, []string{"store.secret_key: want a string value, got a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.file, nil, nil)
			if !errors.Is(err, tt.is) {
				t.Fatalf("want %v, got %v", tt.is, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	_, err := load(t, "listen: a\nbogus: 1\ntimeout: soon\n",
		map[string]string{"HANGAR_RATIO": "half", "HANGAR_STORE_SECRET_KEY": "fine"},
		nil)
	for _, w := range []string{`unknown key "bogus"`, `timeout: invalid value "soon"`, `env HANGAR_RATIO: ratio: invalid value "half": want a number`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}

func TestEnvAndFlagErrors(t *testing.T) {
	_, err := load(t, "", map[string]string{"HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_LEVEL": "max"}, nil)
	var ve *config.ValueError
	if !errors.As(err, &ve) || ve.Key != "snapshot.compression_default.level" || ve.Source != "env HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_LEVEL" || ve.Value != "max" {
		t.Fatalf("env: %v", err)
	}
	// A bad flag fails at parse time, naming the flag and the value.
	_, err = load(t, "", nil, []string{"--timeout", "forever"})
	if err == nil || !strings.Contains(err.Error(), `invalid argument "forever" for "--timeout" flag: want a duration`) {
		t.Fatalf("flag: %v", err)
	}
}

func TestValidateAfterLoad(t *testing.T) {
	_, err := load(t, "listen: ''\nsnapshot:\n  chunk_size: 3\n", nil, []string{"--timeout=-1s"})
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
	for _, w := range []string{"listen is empty", "snapshot.chunk_size 3 is not a power of two", "timeout -1s is not positive"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%v lacks %q", err, w)
		}
	}
}

func TestFileMissingAndEmpty(t *testing.T) {
	s := schema(t)
	cfg := defaults()
	err := s.Load(cfg, config.Sources{File: filepath.Join(t.TempDir(), "nope.yaml"), LookupEnv: envOf(nil)})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	for _, content := range []string{"", "# only a comment\n", "~\n"} {
		cfg, err := load(t, content, nil, nil)
		if err != nil || !reflect.DeepEqual(cfg, defaults()) {
			t.Errorf("file %q: %v %+v", content, err, cfg)
		}
	}
	// A null value keeps the default; an alias and a merge key work.
	cfg, err = load(t, "listen:\nx: &a {algorithm: lz4}\n", nil, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown key "x"`) {
		t.Fatalf("anchor on unknown key: %v", err)
	}
	cfg, err = load(t, "listen:\nsnapshot:\n  compression_default: &p {algorithm: lz4}\n", nil, nil)
	if err != nil || cfg.Listen != "127.0.0.1:7070" || cfg.Snapshot.CompressionDefault.Algorithm != "lz4" {
		t.Fatalf("null and anchor: %v %+v", err, cfg)
	}
}

func TestPrintRoundTrip(t *testing.T) {
	cfg, err := load(t, `
listen: "0.0.0.0:7070"
token: tok-123
snapshot:
  compression_default: {enabled: true, algorithm: zstd, level: 3}
timeout: 1m30s
hosts: [a, "true"]
store: {endpoint: "127.0.0.1:9000", secret_key: minio-secret}
data_dir: "10"
log_level: debug
`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := schema(t)
	var out bytes.Buffer
	if err := s.Print(&out, cfg); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, secret := range []string{"tok-123", "minio-secret"} {
		if strings.Contains(text, secret) {
			t.Fatalf("print leaks %s:\n%s", secret, text)
		}
	}
	if !strings.Contains(text, "token: '[redacted]'") {
		t.Errorf("token not shown redacted:\n%s", text)
	}
	// Read the printed file back: every value but the secrets is the same.
	back := defaults()
	if err := s.Load(back, config.Sources{File: writeFile(t, text), LookupEnv: envOf(nil)}); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	cfg.Token, back.Token = "", ""
	cfg.Store.SecretKey, back.Store.SecretKey = "", ""
	if !reflect.DeepEqual(cfg, back) {
		t.Fatalf("round trip differs\n got %+v\nwant %+v\n%s", back, cfg, text)
	}
	// Unset pointers print as null and read back as unset.
	out.Reset()
	if err := s.Print(&out, defaults()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "compression_default:\n    enabled: null\n") {
		t.Errorf("nil policy:\n%s", out.String())
	}
	back = defaults()
	if err := s.Load(back, config.Sources{File: writeFile(t, out.String()), LookupEnv: envOf(nil)}); err != nil || !reflect.DeepEqual(back, defaults()) {
		t.Fatalf("defaults round trip: %v\n%+v\n%s", err, back, out.String())
	}
}

func TestFlagHelp(t *testing.T) {
	s := schema(t)
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	cfg := defaults()
	cfg.Token = "do-not-show"
	if err := s.AddFlags(fs, cfg); err != nil {
		t.Fatal(err)
	}
	usage := fs.FlagUsages()
	for _, w := range []string{
		"--listen string", `address to listen on (env HANGAR_LISTEN) (default "127.0.0.1:7070")`,
		"--timeout duration", "(default 30s)",
		"--hosts strings",
		"--token string", "(env HANGAR_TOKEN; a secret: prefer the env or a file, flags show in ps)",
		"--snapshot.compression_default.level int",
	} {
		if !strings.Contains(usage, w) {
			t.Errorf("usage lacks %q:\n%s", w, usage)
		}
	}
	if strings.Contains(usage, "do-not-show") {
		t.Errorf("usage shows the secret:\n%s", usage)
	}
	if err := s.AddFlags(fs, cfg); err == nil {
		t.Error("registering twice: no error")
	}
}

func TestSchemaErrors(t *testing.T) {
	type badMap struct {
		M map[string]string `yaml:"m"`
	}
	type badSegment struct {
		X int `yaml:"Bad-Name"`
	}
	type envClash struct {
		A struct {
			B int `yaml:"b_c"`
		} `yaml:"a"`
		AB struct {
			C int `yaml:"c"`
		} `yaml:"a_b"`
	}
	type dup struct {
		X int `yaml:"x"`
		Y int `yaml:"x"`
	}
	tests := []struct {
		name string
		cfg  any
		want string
	}{
		{"map field", badMap{}, `field M (m): type map[string]string cannot be loaded`},
		{"bad segment", badSegment{}, `key segment "Bad-Name"`},
		{"env clash", envClash{}, `share the environment variable HANGAR_A_B_C`},
		{"duplicate", dup{}, `key "x" is defined twice`},
		{"not a struct", 3, "want a struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.NewSchema(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want %q, got %v", tt.want, err)
			}
		})
	}
	s := schema(t)
	if err := s.Load(&struct{}{}, config.Sources{}); err == nil {
		t.Error("load into another type: no error")
	}
}

func TestSecretRedacts(t *testing.T) {
	s := config.Secret("hunter2")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", s, "cfg", struct{ T config.Secret }{s})
	j, _ := json.Marshal(struct{ T config.Secret }{s})
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%s %v %q %x %d %#v %+v", s, s, s, s, s, s, struct{ T config.Secret }{s}),
		string(j), logs.String(),
	}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") || strings.Contains(o, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("leak: %s", o)
		}
		if !strings.Contains(o, config.Redacted) {
			t.Errorf("no redaction marker: %s", o)
		}
	}
	if s.Reveal() != "hunter2" || config.Secret("").String() != "" {
		t.Error("Reveal or empty")
	}
}
