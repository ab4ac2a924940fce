package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/compression"
)

// TestCompressionPrecedence: request override > instance snapshot_policy >
// server default, read back from the snapshot resource, as sent to the
// host, and (after the upload) as recorded in the manifest.
func TestCompressionPrecedence(t *testing.T) {
	cfg := testConfig(t)
	cfg.Snapshot.CompressionDefault = compression.Policy{Algorithm: "lz4", Level: ptr(2)}
	e := newEnv(t, cfg)
	ctx := context.Background()
	h := e.addHost("host-a", 1<<20, 256)
	comp := func(alg string, level *int, enabled *bool) *api.Compression {
		c := &api.Compression{Level: level, Enabled: enabled}
		if alg != "" {
			c.Algorithm = &alg
		}
		return c
	}
	for i, tt := range []struct {
		name     string
		instance *api.Compression
		request  *api.Compression
		want     api.AppliedCompression
	}{
		{"server default", nil, nil, api.AppliedCompression{Algorithm: "lz4", Level: 2}},
		{"instance policy", comp("zstd", ptr(5), nil), nil, api.AppliedCompression{Algorithm: "zstd", Level: 5}},
		{"empty override defers", comp("zstd", ptr(5), nil), comp("", nil, nil), api.AppliedCompression{Algorithm: "zstd", Level: 5}},
		{"override wins", comp("zstd", ptr(5), nil), comp("LZ4", nil, nil), api.AppliedCompression{Algorithm: "lz4", Level: 0}},
		{"override level", nil, comp("zstd", ptr(19), nil), api.AppliedCompression{Algorithm: "zstd", Level: 19}},
		{"instance disabled", comp("", nil, ptr(false)), nil, api.AppliedCompression{Algorithm: "none", Level: 0}},
		{"override disabled", comp("zstd", ptr(5), nil), comp("zstd", ptr(3), ptr(false)), api.AppliedCompression{Algorithm: "none", Level: 0}},
		{"enabled alone is zstd 1", comp("lz4", ptr(9), nil), comp("", nil, ptr(true)), api.AppliedCompression{Algorithm: "zstd", Level: 1}},
		{"empty instance policy defers", comp("", nil, nil), nil, api.AppliedCompression{Algorithm: "lz4", Level: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := e.create(fmt.Sprintf("p-%d", i), 128, 1, "", tt.instance)
			in = e.standby(in.Id, tt.request)
			sid := *in.SnapshotId
			s := e.snapshot(sid)
			if s.Compression == nil || *s.Compression != tt.want {
				t.Fatalf("snapshot compression %+v, want %+v", s.Compression, tt.want)
			}
			h.mu.Lock()
			sent := h.standbys[len(h.standbys)-1]
			h.mu.Unlock()
			if sent.SnapshotId != sid || sent.Compression != tt.want {
				t.Fatalf("host got %+v, want %+v", sent, tt.want)
			}
			m, err := h.commit(ctx, sid)
			if err != nil {
				t.Fatal(err)
			}
			if m.Compression.Algorithm != string(tt.want.Algorithm) || m.Compression.Level != tt.want.Level {
				t.Fatalf("manifest compression %+v", m.Compression)
			}
			e.heartbeat(h)
			waitFor(t, "central", func() bool {
				s := e.snapshot(sid)
				return s.State == api.SnapshotStateCentral && s.CompressedBytes != nil && *s.CompressedBytes == m.Totals.Compressed
			})
			if s := e.snapshot(sid); *s.Compression != tt.want {
				t.Fatalf("central snapshot compression %+v", s.Compression)
			}
		})
	}
}
