package storeconfig_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/retry"
	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/storage/storeconfig"
)

func TestEffectiveKind(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    storeconfig.Config
		want string
	}{
		{"explicit wins", storeconfig.Config{Kind: "s3", Dir: "/x"}, storeconfig.KindS3},
		{"dir only", storeconfig.Config{Dir: "/x"}, storeconfig.KindFS},
		{"endpoint only", storeconfig.Config{S3: s3.Config{Endpoint: "127.0.0.1:9000"}}, storeconfig.KindS3},
		{"both", storeconfig.Config{Dir: "/x", S3: s3.Config{Endpoint: "127.0.0.1:9000"}}, ""},
		{"neither", storeconfig.Config{}, ""},
	} {
		if got := tt.c.EffectiveKind(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    storeconfig.Config
		want []string // substrings; none: valid
	}{
		{"fs", storeconfig.Config{Dir: "/x"}, nil},
		{"s3", storeconfig.Config{S3: s3.Config{Endpoint: "127.0.0.1:9000", Bucket: "hangar", AccessKey: "k", SecretKey: "s"}}, nil},
		{"nothing", storeconfig.Config{}, []string{"store:", "HANGAR_STORE_DIR"}},
		{"fs without dir", storeconfig.Config{Kind: "fs"}, []string{"store.dir"}},
		{"s3 without bucket", storeconfig.Config{Kind: "s3", S3: s3.Config{Endpoint: "127.0.0.1:9000"}}, []string{"store.s3"}},
		{"unknown kind and bad retry, at once", storeconfig.Config{Kind: "tape", Retry: retry.Config{MaxAttempts: -1}},
			[]string{`store.kind: "tape"`, "store.retry"}},
	} {
		err := tt.c.Validate()
		if len(tt.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q missing from %v", tt.name, w, err)
			}
		}
	}
}

func TestWithDefaults(t *testing.T) {
	fsc := storeconfig.Config{Dir: "/x"}.WithDefaults()
	if fsc.Kind != "" || fsc.S3.UnsignedPayloadPrefixes != nil || fsc.Retry.MaxAttempts != retry.DefaultConfig().MaxAttempts ||
		fsc.Retry.Jitter != retry.DefaultConfig().Jitter {
		t.Errorf("fs defaults: %+v", fsc)
	}
	// Chunk bodies unsigned by default; an explicit empty list signs all.
	c := storeconfig.Config{Kind: "s3", S3: s3.Config{Endpoint: "127.0.0.1:9000", Bucket: "b"}}
	if got := c.WithDefaults().S3.UnsignedPayloadPrefixes; len(got) != 1 || got[0] != "chunks/" {
		t.Errorf("unsigned payload prefixes %q, want [chunks/]", got)
	}
	c.S3.UnsignedPayloadPrefixes = []string{}
	if got := c.WithDefaults().S3.UnsignedPayloadPrefixes; len(got) != 0 {
		t.Errorf("explicit empty list became %q", got)
	}
	// Jitter 0 set beside another field stays 0 (no jitter).
	r := storeconfig.Config{Dir: "/x", Retry: retry.Config{MaxAttempts: 3}}.WithDefaults().Retry
	if r.MaxAttempts != 3 || r.Jitter != 0 || r.MaxBackoff != retry.DefaultConfig().MaxBackoff {
		t.Errorf("retry defaults: %+v", r)
	}
}

// TestOpenFS opens a real directory through the whole stack.
func TestOpenFS(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	st, err := storeconfig.Open(ctx, storeconfig.Config{Dir: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "manifests/a", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "manifests/missing", 0, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("get missing: %v, want ErrNotFound", err)
	}
	if _, err := storeconfig.Open(ctx, storeconfig.Config{Kind: "tape"}, nil, nil); err == nil || !strings.Contains(err.Error(), "store.kind") {
		t.Errorf("open of kind tape: %v", err)
	}
}
