package s3

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/hangar-vm/hangar/storage"
)

// Defaults, applied by WithDefaults.
const (
	DefaultRegion          = "us-east-1"
	DefaultPartSize        = 16 << 20
	DefaultPartConcurrency = 4
)

// S3 limits on multi-part uploads.
const (
	MinPartSize        = 5 << 20
	MaxPartSize        = 5 << 30
	MaxPartConcurrency = 64
)

// Config configures a Store.
type Config struct {
	// Endpoint is the server's host:port, without a scheme (see UseTLS).
	Endpoint string `json:"endpoint"`
	// Region defaults to $AWS_REGION, then $AWS_DEFAULT_REGION, then us-east-1.
	Region string `json:"region,omitempty"`
	// Bucket must exist unless CreateBucket is set.
	Bucket string `json:"bucket"`
	// Prefix, if set, is prepended with a slash to every key, so stores with
	// different prefixes share a bucket without seeing each other.
	Prefix string `json:"prefix,omitempty"`

	// AccessKey and SecretKey (and SessionToken for temporary credentials)
	// default to AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
	// AWS_SESSION_TOKEN when AccessKey and SecretKey are both unset.
	AccessKey    string `json:"access_key,omitempty"`
	SecretKey    Secret `json:"secret_key,omitempty"`
	SessionToken Secret `json:"session_token,omitempty"`

	// UseTLS selects https.
	UseTLS bool `json:"use_tls"`
	// CreateBucket makes Open create Bucket when it does not exist.
	CreateBucket bool `json:"create_bucket,omitempty"`

	// PartSize is the size of each part of a multi-part upload; objects up
	// to this size are sent in a single PUT. 5 MiB .. 5 GiB, default 16 MiB.
	PartSize uint64 `json:"part_size,omitempty"`
	// PartConcurrency is how many parts of one object are sent at once.
	// 1 .. 64, default 4.
	PartConcurrency uint `json:"part_concurrency,omitempty"`

	// UnsignedPayloadPrefixes lists key prefixes whose object bodies are
	// sent as UNSIGNED-PAYLOAD. Default: none, every body is signed.
	//
	// Over plain HTTP minio-go signs every PUT body with a streaming
	// SigV4 signature (a SHA-256 and an HMAC per 64 KiB) and the server
	// verifies it: on MinIO beside the uploader that is a SHA-256 of every
	// stored byte on each side. The request itself stays signed either
	// way (who may write where is still checked); only the body's
	// integrity is left to the caller. That is sound only for data the
	// reader verifies end to end, such as content-addressed chunks whose
	// key is the hash of their content ("chunks/" of storage/snapshot, which
	// every read and verify check). Manifests, locks and anything else must
	// keep signing. Over TLS minio-go already sends UNSIGNED-PAYLOAD (TLS
	// protects the body), so the setting changes nothing there. A prefix
	// matches the keys that start with it (before Prefix is prepended).
	UnsignedPayloadPrefixes []string `json:"unsigned_payload_prefixes,omitempty"`

	// Logger receives the store's logs; nil means slog.Default().
	Logger *slog.Logger `json:"-"`

	// transport, if set, replaces minio-go's HTTP transport (tests only).
	transport http.RoundTripper
}

// WithDefaults returns c with every unset field given its default, reading
// the standard AWS environment variables for credentials and region. This is
// the one place defaults live.
func (c Config) WithDefaults() Config { return c.withDefaults(os.Getenv) }

func (c Config) withDefaults(getenv func(string) string) Config {
	if c.Region == "" {
		c.Region = getenv("AWS_REGION")
	}
	if c.Region == "" {
		c.Region = getenv("AWS_DEFAULT_REGION")
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	// Credentials come from one source: mixing a configured access key with
	// an environment secret would authenticate as nobody in particular.
	if c.AccessKey == "" && c.SecretKey == "" {
		c.AccessKey = getenv("AWS_ACCESS_KEY_ID")
		c.SecretKey = Secret(getenv("AWS_SECRET_ACCESS_KEY"))
		if c.SessionToken == "" {
			c.SessionToken = Secret(getenv("AWS_SESSION_TOKEN"))
		}
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartConcurrency == 0 {
		c.PartConcurrency = DefaultPartConcurrency
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every problem with c (after defaults, so a zero field
// that has a default is fine) at once. Open calls it.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case c.Endpoint == "":
		bad("endpoint is empty")
	case strings.Contains(c.Endpoint, "://"):
		bad("endpoint %q has a scheme: give host:port and set use_tls", c.Endpoint)
	case strings.ContainsAny(c.Endpoint, "/?# "):
		bad("endpoint %q is not host:port", c.Endpoint)
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		bad("bucket %q: %v", c.Bucket, err)
	}
	if c.Prefix != "" {
		if err := storage.ValidateKey(strings.TrimSuffix(c.Prefix, "/")); err != nil {
			bad("prefix: %v", err)
		}
	}
	switch {
	case c.AccessKey == "" && c.SecretKey == "":
		bad("no credentials: set access_key and secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	case c.AccessKey == "":
		bad("secret_key is set but access_key is empty")
	case c.SecretKey == "":
		bad("access_key is set but secret_key is empty")
	}
	if c.PartSize < MinPartSize || c.PartSize > MaxPartSize {
		bad("part_size %d not in %d..%d", c.PartSize, MinPartSize, MaxPartSize)
	}
	for _, p := range c.UnsignedPayloadPrefixes {
		if p == "" {
			bad("unsigned_payload_prefixes: an empty prefix would leave every body unsigned, manifests included")
		} else if err := storage.ValidatePrefix(p); err != nil {
			bad("unsigned_payload_prefixes: %v", err)
		}
	}
	if c.PartConcurrency > MaxPartConcurrency {
		bad("part_concurrency %d not in 1..%d", c.PartConcurrency, MaxPartConcurrency)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid s3 config: %w", errors.Join(errs...))
}

// keyPrefix is what the store prepends to every key: "" or "<Prefix>/".
func (c Config) keyPrefix() string {
	p := strings.TrimSuffix(c.Prefix, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}
