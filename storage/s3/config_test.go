package s3

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func clearAWSEnv(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(v, "")
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	clearAWSEnv(t)
	cfg := Config{
		Endpoint:        "http://minio:9000",
		Bucket:          "No_Such..Bucket",
		Prefix:          "../escape",
		AccessKey:       "ak",
		PartSize:        1 << 20,
		PartConcurrency: 1000,
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{"endpoint", "bucket", "prefix", "secret_key", "part_size", "part_concurrency"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error does not mention %s:\n%v", want, err)
		}
	}
}

func TestValidate(t *testing.T) {
	clearAWSEnv(t)
	good := Config{Endpoint: "127.0.0.1:9000", Bucket: "hangar", AccessKey: "ak", SecretKey: "sk"}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"prefix with slash", func(c *Config) { c.Prefix = "team/a/" }, ""},
		{"explicit sizes", func(c *Config) { c.PartSize = MinPartSize; c.PartConcurrency = MaxPartConcurrency }, ""},
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, "endpoint"},
		{"endpoint path", func(c *Config) { c.Endpoint = "host:1/x" }, "endpoint"},
		{"no bucket", func(c *Config) { c.Bucket = "" }, "bucket"},
		{"bad prefix", func(c *Config) { c.Prefix = "a//b" }, "prefix"},
		{"no credentials", func(c *Config) { c.AccessKey, c.SecretKey = "", "" }, "credentials"},
		{"no access key", func(c *Config) { c.AccessKey = "" }, "access_key"},
		{"part too big", func(c *Config) { c.PartSize = MaxPartSize + 1 }, "part_size"},
		{"unsigned chunks", func(c *Config) { c.UnsignedPayloadPrefixes = []string{"chunks/"} }, ""},
		{"unsigned everything", func(c *Config) { c.UnsignedPayloadPrefixes = []string{"chunks/", ""} }, "unsigned_payload_prefixes"},
		{"unsigned bad prefix", func(c *Config) { c.UnsignedPayloadPrefixes = []string{"../x"} }, "unsigned_payload_prefixes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("Validate = %v, want a problem with %s", err, tc.field)
			}
		})
	}
}

func TestDefaultsFromEnvironment(t *testing.T) {
	clearAWSEnv(t)
	env := map[string]string{
		"AWS_ACCESS_KEY_ID":     "env-ak",
		"AWS_SECRET_ACCESS_KEY": "env-sk",
		"AWS_REGION":            "eu-west-3",
	}
	c := Config{Endpoint: "h:1", Bucket: "b"}.withDefaults(func(k string) string { return env[k] })
	if c.AccessKey != "env-ak" || c.SecretKey.Reveal() != "env-sk" || c.Region != "eu-west-3" {
		t.Fatalf("defaults from env: %+v", c)
	}
	if c.PartSize != DefaultPartSize || c.PartConcurrency != DefaultPartConcurrency {
		t.Fatalf("part defaults: %d, %d", c.PartSize, c.PartConcurrency)
	}
	// Configured credentials win, and are not mixed with the environment.
	c = Config{AccessKey: "cfg-ak"}.withDefaults(func(k string) string { return env[k] })
	if c.AccessKey != "cfg-ak" || c.SecretKey != "" {
		t.Fatalf("configured access key mixed with env secret: %q / %q", c.AccessKey, c.SecretKey.Reveal())
	}
	if c := (Config{}).withDefaults(func(string) string { return "" }); c.Region != DefaultRegion {
		t.Fatalf("default region %q", c.Region)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	const secret = "s3cr3t-VALUE"
	cfg := Config{Endpoint: "h:1", Bucket: "b", AccessKey: "ak", SecretKey: secret, SessionToken: secret}
	var out []string
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		out = append(out, fmt.Sprintf(format, cfg), fmt.Sprintf(format, cfg.SecretKey))
	}
	out = append(out, fmt.Sprint(cfg.SecretKey), fmt.Sprintln(cfg), cfg.SecretKey.String())
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(j))
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		slog.New(h).Info("opening", "config", cfg, "secret", cfg.SecretKey)
	}
	out = append(out, logs.String())

	for _, s := range out {
		if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) {
			t.Errorf("secret leaked: %s", s)
		}
	}
	if !strings.Contains(string(j), redacted) {
		t.Errorf("JSON %s does not show that a secret is set", j)
	}
	if cfg.SecretKey.Reveal() != secret {
		t.Error("Reveal lost the value")
	}
	if Secret("").String() != "" {
		t.Error("an empty secret should print empty")
	}
}
