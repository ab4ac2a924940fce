package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/storage/storeconfig"
)

// Config configures a Server: one YAML document (see ParseConfig), every
// key a field here. Defaults live in one place, WithDefaults; Validate
// reports every problem at once.
type Config struct {
	// Listen is the address of the public and cluster API (host:port).
	Listen string `yaml:"listen" json:"listen"`
	// Auth holds the two bearer tokens.
	Auth AuthConfig `yaml:"auth" json:"auth"`
	// Hosts sets how host daemons heartbeat and when they count as gone.
	Hosts HostsConfig `yaml:"hosts" json:"hosts"`
	// Snapshot holds the server-wide snapshot settings.
	Snapshot SnapshotConfig `yaml:"snapshot" json:"snapshot"`
	// HTTP bounds requests.
	HTTP HTTPConfig `yaml:"http" json:"http"`
	// Store is the central store, the system of record of the catalog.
	Store StoreConfig `yaml:"store" json:"store"`
	// StateDir holds the server's cache of the catalog. Deleting it loses
	// nothing the bucket knows; empty keeps no cache.
	StateDir string `yaml:"state_dir" json:"state_dir"`
	// CatalogSync is how often the whole catalog is re-read from the
	// bucket: a safety net (snapshots written or deleted behind the
	// server's back); commits are learned from heartbeats at once.
	CatalogSync Duration `yaml:"catalog_sync" json:"catalog_sync"`
}

// AuthConfig holds the bearer tokens. They must differ: a user token must
// never open the cluster endpoints, nor the reverse.
type AuthConfig struct {
	// UserToken authenticates users on /v1/..., /metrics, /openapi.yaml.
	UserToken Secret `yaml:"user_token" json:"user_token"`
	// ClusterToken authenticates host daemons on /cluster/v1/..., and the
	// server on the hosts' API.
	ClusterToken Secret `yaml:"cluster_token" json:"cluster_token"`
}

// HostsConfig: a host is unavailable once MissedHeartbeats intervals passed
// without a heartbeat.
type HostsConfig struct {
	// HeartbeatInterval is told to hosts at registration; whole seconds,
	// 1s-1h.
	HeartbeatInterval Duration `yaml:"heartbeat_interval" json:"heartbeat_interval"`
	// MissedHeartbeats is how many intervals without a heartbeat make a
	// host unavailable, 1-100.
	MissedHeartbeats int `yaml:"missed_heartbeats" json:"missed_heartbeats"`
	// CallTimeout bounds one call to a host (retries included), 1s-1h.
	// Restores that download a large guest need the upper range.
	CallTimeout Duration `yaml:"call_timeout" json:"call_timeout"`
	// CallRetries is how many times an idempotent host call is retried
	// after a transport failure, 0-10.
	CallRetries int `yaml:"call_retries" json:"call_retries"`
}

// SnapshotConfig holds server-wide snapshot settings.
type SnapshotConfig struct {
	// CompressionDefault is the last level of compression precedence
	// (request > instance snapshot_policy > this). Unset means zstd at
	// its default level.
	CompressionDefault compression.Policy `yaml:"compression_default" json:"compression_default"`
}

// HTTPConfig bounds requests.
type HTTPConfig struct {
	// MaxBodyBytes bounds a public API request body (1 KiB - 64 MiB);
	// a larger one is 400 invalid_request.
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes"`
	// MaxClusterBodyBytes bounds a host's heartbeat or registration (it
	// lists every instance and snapshot of the host), 1 KiB - 256 MiB.
	MaxClusterBodyBytes int64 `yaml:"max_cluster_body_bytes" json:"max_cluster_body_bytes"`
	// ReadHeaderTimeout and ShutdownTimeout of the HTTP server.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout" json:"read_header_timeout"`
	ShutdownTimeout   Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
}

// Store kinds.
const (
	StoreS3 = storeconfig.KindS3 // an S3-compatible bucket (MinIO, AWS S3)
	StoreFS = storeconfig.KindFS // a local directory (hangar dev, one machine)
)

// StoreConfig names the central store: the store section every hangar
// process shares (storage/storeconfig, whose Open turns it into a
// storage.Store). The server insists on an explicit kind.
type StoreConfig = storeconfig.Config

// Defaults, in one place.
const (
	DefaultListen              = "127.0.0.1:7070"
	DefaultHeartbeatInterval   = 5 * time.Second
	DefaultMissedHeartbeats    = 3
	DefaultCallTimeout         = 10 * time.Minute
	DefaultCallRetries         = 3
	DefaultMaxBodyBytes        = 1 << 20
	DefaultMaxClusterBodyBytes = 32 << 20
	DefaultReadHeaderTimeout   = 10 * time.Second
	DefaultShutdownTimeout     = 30 * time.Second
	DefaultCatalogSync         = time.Minute
)

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Hosts.HeartbeatInterval == 0 {
		c.Hosts.HeartbeatInterval = Duration(DefaultHeartbeatInterval)
	}
	if c.Hosts.MissedHeartbeats == 0 {
		c.Hosts.MissedHeartbeats = DefaultMissedHeartbeats
	}
	if c.Hosts.CallTimeout == 0 {
		c.Hosts.CallTimeout = Duration(DefaultCallTimeout)
	}
	if c.Hosts.CallRetries == 0 {
		c.Hosts.CallRetries = DefaultCallRetries
	}
	if !c.Snapshot.CompressionDefault.IsSet() {
		c.Snapshot.CompressionDefault = compression.Policy{Algorithm: string(compression.Zstd)}
	}
	if c.HTTP.MaxBodyBytes == 0 {
		c.HTTP.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.HTTP.MaxClusterBodyBytes == 0 {
		c.HTTP.MaxClusterBodyBytes = DefaultMaxClusterBodyBytes
	}
	if c.HTTP.ReadHeaderTimeout == 0 {
		c.HTTP.ReadHeaderTimeout = Duration(DefaultReadHeaderTimeout)
	}
	if c.HTTP.ShutdownTimeout == 0 {
		c.HTTP.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if c.CatalogSync == 0 {
		c.CatalogSync = Duration(DefaultCatalogSync)
	}
	c.Store = c.Store.WithDefaults()
	return c
}

// MinTokenLen is the shortest token accepted: a guessable token is no
// authentication.
const MinTokenLen = 16

// Validate reports every problem with c (after defaults) at once.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q is not host:port: %v", c.Listen, err)
	}
	if n := len(c.Auth.UserToken); n < MinTokenLen {
		add("auth.user_token: %d characters, want at least %d", n, MinTokenLen)
	}
	if n := len(c.Auth.ClusterToken); n < MinTokenLen {
		add("auth.cluster_token: %d characters, want at least %d", n, MinTokenLen)
	}
	if c.Auth.UserToken != "" && c.Auth.UserToken == c.Auth.ClusterToken {
		add("auth: user_token and cluster_token are equal; they must differ")
	}
	if hb := time.Duration(c.Hosts.HeartbeatInterval); hb < time.Second || hb > time.Hour || hb%time.Second != 0 {
		add("hosts.heartbeat_interval: %v, want whole seconds from 1s to 1h", hb)
	}
	if m := c.Hosts.MissedHeartbeats; m < 1 || m > 100 {
		add("hosts.missed_heartbeats: %d, want 1-100", m)
	}
	if t := time.Duration(c.Hosts.CallTimeout); t < time.Second || t > time.Hour {
		add("hosts.call_timeout: %v, want 1s-1h", t)
	}
	if r := c.Hosts.CallRetries; r < 0 || r > 10 {
		add("hosts.call_retries: %d, want 0-10", r)
	}
	if err := c.Snapshot.CompressionDefault.Validate(); err != nil {
		add("snapshot.compression_default: %w", err)
	}
	if b := c.HTTP.MaxBodyBytes; b < 1<<10 || b > 64<<20 {
		add("http.max_body_bytes: %d, want 1024-%d", b, 64<<20)
	}
	if b := c.HTTP.MaxClusterBodyBytes; b < 1<<10 || b > 256<<20 {
		add("http.max_cluster_body_bytes: %d, want 1024-%d", b, 256<<20)
	}
	if c.HTTP.ReadHeaderTimeout < 0 {
		add("http.read_header_timeout: %v is negative", c.HTTP.ReadHeaderTimeout)
	}
	if c.HTTP.ShutdownTimeout < 0 {
		add("http.shutdown_timeout: %v is negative", c.HTTP.ShutdownTimeout)
	}
	if s := time.Duration(c.CatalogSync); s < time.Second {
		add("catalog_sync: %v, want at least 1s", s)
	}
	// The server's store is the system of record: its kind is never
	// guessed from the other settings.
	if c.Store.Kind == "" {
		add("store.kind: required (s3 or fs)")
	} else if err := c.Store.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ParseConfig reads a YAML config. Unknown keys are errors (a typo must not
// silently leave a default in place). The result has defaults applied and
// is validated.
//
// The YAML is turned into JSON and decoded by the JSON tags, which every
// config struct here and below (s3.Config, compression.Policy) carries.
func ParseConfig(data []byte) (Config, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, fmt.Errorf("server config: %w", err)
	}
	var c Config
	if doc != nil {
		j, err := json.Marshal(doc)
		if err != nil {
			return Config{}, fmt.Errorf("server config: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("server config: %w", err)
		}
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("server config: %w", err)
	}
	return c, nil
}

// Duration is a time.Duration written as "5s", "1m30s" in config files.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler (YAML, JSON strings).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// String implements fmt.Stringer.
func (d Duration) String() string { return time.Duration(d).String() }

// Secret is a token: it prints, marshals and logs as "[redacted]";
// Reveal returns the value for the one place that compares it. It is the
// config loader's type, so --print-config redacts it too.
type Secret = config.Secret
