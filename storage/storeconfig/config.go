package storeconfig

import (
	"errors"
	"fmt"

	"github.com/hangar-vm/hangar/storage/retry"
	"github.com/hangar-vm/hangar/storage/s3"
)

// Store kinds.
const (
	KindS3 = "s3" // an S3-compatible bucket (MinIO, AWS S3)
	KindFS = "fs" // a local directory (hangar dev, one machine)
)

// Config names central storage. Its keys are those of the store: section
// of every hangar config file; error messages name them so (store.kind,
// store.s3, ...).
type Config struct {
	// Kind is s3 or fs; empty: fs when only dir is set, s3 when only
	// s3.endpoint is (see EffectiveKind).
	Kind string `yaml:"kind" json:"kind"`
	// S3 configures kind s3 (endpoint, bucket, prefix, credentials, TLS).
	S3 s3.Config `yaml:"s3" json:"s3"`
	// Dir is the directory of kind fs.
	Dir string `yaml:"dir" json:"dir"`
	// Retry is the retry budget of every store call; unset fields take
	// retry.DefaultConfig's values.
	Retry retry.Config `yaml:"retry" json:"retry"`
}

// DefaultUnsignedPayloadPrefixes are the keys whose bodies the S3 store
// sends as UNSIGNED-PAYLOAD unless store.s3.unsigned_payload_prefixes
// says otherwise (an empty list signs every body): the chunks, which are
// most of what is uploaded. Over plain HTTP a signed body costs a SHA-256
// of every byte on both ends, and a chunk needs none of it: its key is the
// SHA-256 of its content, checked after decompression on every read
// (restore, fork, verify), so a body damaged on the way is refused by its
// readers. Manifests and locks have no such check and stay signed.
func DefaultUnsignedPayloadPrefixes() []string { return []string{"chunks/"} }

// EffectiveKind is Kind, or the one kind the other settings point at, or
// "" when they point at none or both.
func (c Config) EffectiveKind() string {
	switch {
	case c.Kind != "":
		return c.Kind
	case c.Dir != "" && c.S3.Endpoint == "":
		return KindFS
	case c.Dir == "" && c.S3.Endpoint != "":
		return KindS3
	}
	return ""
}

// WithDefaults returns c with every unset field at its default: the S3
// defaults (and the unsigned chunk bodies) for kind s3, and the retry
// budget. Kind itself is left as given, so that a caller may insist on it.
func (c Config) WithDefaults() Config {
	if c.EffectiveKind() == KindS3 {
		c.S3 = c.S3.WithDefaults()
		if c.S3.UnsignedPayloadPrefixes == nil {
			c.S3.UnsignedPayloadPrefixes = DefaultUnsignedPayloadPrefixes()
		}
	}
	c.Retry = retryDefaults(c.Retry)
	return c
}

// Validate reports every problem with c (defaults applied first) at once,
// each naming its key under store.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	switch c.EffectiveKind() {
	case KindS3:
		if err := c.S3.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("store.s3: %w", err))
		}
	case KindFS:
		if c.Dir == "" {
			errs = append(errs, errors.New("store.dir: empty; a store of kind fs needs a directory"))
		}
	case "":
		errs = append(errs, errors.New("store: no store given; set store.dir (kind fs; --store.dir, HANGAR_STORE_DIR) or store.s3.endpoint and store.s3.bucket (kind s3)"))
	default:
		errs = append(errs, fmt.Errorf("store.kind: %q, want s3 or fs", c.Kind))
	}
	if err := c.Retry.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("store.retry: %w", err))
	}
	return errors.Join(errs...)
}

// retryDefaults fills the unset fields of r from retry.DefaultConfig.
// Jitter 0 is a legitimate setting (none), so it is taken from the
// defaults only when nothing at all was set.
func retryDefaults(r retry.Config) retry.Config {
	d := retry.DefaultConfig()
	if r.MaxAttempts == 0 && r.MaxElapsed == 0 && r.InitialBackoff == 0 && r.MaxBackoff == 0 && r.Multiplier == 0 && r.Jitter == 0 {
		r.Jitter = d.Jitter
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = d.MaxAttempts
	}
	if r.MaxElapsed == 0 {
		r.MaxElapsed = d.MaxElapsed
	}
	if r.InitialBackoff == 0 {
		r.InitialBackoff = d.InitialBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = d.MaxBackoff
	}
	if r.Multiplier == 0 {
		r.Multiplier = d.Multiplier
	}
	return r
}
