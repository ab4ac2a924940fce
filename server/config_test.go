package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/server"
)

func TestParseConfig(t *testing.T) {
	c, err := server.ParseConfig([]byte(`
listen: 127.0.0.1:9999
auth: {user_token: user-token-0123456789abcdef, cluster_token: cluster-token-0123456789abcdef}
hosts: {heartbeat_interval: 2s, missed_heartbeats: 4}
snapshot: {compression_default: {algorithm: lz4, level: 3}}
store: {kind: s3, s3: {endpoint: "127.0.0.1:9000", bucket: hangar, access_key: k, secret_key: s3cr3t-value}}
state_dir: /tmp/x
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9999" || time.Duration(c.Hosts.HeartbeatInterval) != 2*time.Second || c.Hosts.MissedHeartbeats != 4 ||
		c.Snapshot.CompressionDefault.Algorithm != "lz4" || *c.Snapshot.CompressionDefault.Level != 3 ||
		c.Store.S3.Bucket != "hangar" || c.Store.S3.SecretKey.Reveal() != "s3cr3t-value" || c.HTTP.MaxBodyBytes != 1<<20 {
		t.Fatalf("parsed %+v", c)
	}
	// Secrets never print.
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "cfg", c, "token", c.Auth.UserToken)
	j, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Auth.ClusterToken), string(j), logs.String()} {
		for _, secret := range []string{"user-token-0123456789abcdef", "cluster-token-0123456789abcdef", "s3cr3t-value"} {
			if strings.Contains(out, secret) {
				t.Fatalf("secret %q leaked in %s", secret, out)
			}
		}
	}

	// Chunk bodies go unsigned by default (each is verified by its id on
	// every read); an explicit empty list signs every body.
	if got := c.Store.S3.UnsignedPayloadPrefixes; len(got) != 1 || got[0] != "chunks/" {
		t.Errorf("unsigned payload prefixes %q, want [chunks/]", got)
	}
	signed, err := server.ParseConfig([]byte(`
auth: {user_token: user-token-0123456789abcdef, cluster_token: cluster-token-0123456789abcdef}
store: {kind: s3, s3: {endpoint: "127.0.0.1:9000", bucket: hangar, access_key: k, secret_key: s, unsigned_payload_prefixes: []}}
`))
	if err != nil || len(signed.Store.S3.UnsignedPayloadPrefixes) != 0 {
		t.Errorf("explicit empty list: %v %q", err, signed.Store.S3.UnsignedPayloadPrefixes)
	}

	if _, err := server.ParseConfig([]byte("auth: {user_tokn: x}\n")); err == nil || !strings.Contains(err.Error(), "user_tokn") {
		t.Fatalf("unknown key: %v", err)
	}
}

// TestConfigValidate: every problem at once.
func TestConfigValidate(t *testing.T) {
	c := server.Config{
		Listen:   "nonsense",
		Auth:     server.AuthConfig{UserToken: "short", ClusterToken: "short"},
		Hosts:    server.HostsConfig{HeartbeatInterval: server.Duration(1500 * time.Millisecond), MissedHeartbeats: 1000},
		HTTP:     server.HTTPConfig{MaxBodyBytes: 10},
		Snapshot: server.SnapshotConfig{},
		Store:    server.StoreConfig{Kind: "ftp"},
	}
	c.Snapshot.CompressionDefault.Algorithm = "zstd"
	c.Snapshot.CompressionDefault.Level = new(int)
	*c.Snapshot.CompressionDefault.Level = 40
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"listen", "auth.user_token", "auth.cluster_token", "must differ", "hosts.heartbeat_interval",
		"hosts.missed_heartbeats", "snapshot.compression_default", "40 is out of range for zstd (1-19)", "http.max_body_bytes", "store.kind"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
	}
	if _, err := server.New(c); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}
