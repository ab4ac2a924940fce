package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/cli"
)

func TestServerPrintConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(file, []byte(`
listen: 127.0.0.1:7171
auth:
  user_token: file-user-token-0123456789
  cluster_token: file-cluster-token-0123456789
snapshot:
  compression_default: {algorithm: lz4}
store: {kind: fs, dir: /tmp/x}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_ALGORITHM": "zstd", // env over file
		"HANGAR_SNAPSHOT_COMPRESSION_DEFAULT_LEVEL":     "3",
		"HANGAR_HOSTS_MISSED_HEARTBEATS":                "7",
	}
	r := runEnv(t, env, false, "server", "--config", file, "--print-config", "--hosts.missed_heartbeats", "9", "--listen=127.0.0.1:7272")
	if r.code != cli.ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, w := range []string{"listen: 127.0.0.1:7272", "algorithm: zstd", "level: 3", "missed_heartbeats: 9", "user_token: '[redacted]'", "heartbeat_interval: 5s", "dir: /tmp/x"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("effective config lacks %q", w)
		}
	}
	if strings.Contains(r.stdout, "file-user-token") || strings.Contains(r.stdout, "file-cluster-token") {
		t.Error("--print-config shows a secret")
	}
}

func TestServerConfigErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(file, []byte("lisen: x\nhosts:\n  missed_heartbeats: many\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runEnv(t, map[string]string{}, false, "server", "--config", file)
	for _, w := range []string{`unknown key "lisen" (did you mean "listen"?)`, `hosts.missed_heartbeats: invalid value "many": want an integer`} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q", w)
		}
	}
	if r.code != cli.ExitUsage {
		t.Errorf("exit %d", r.code)
	}
	// Validate reports every problem at once, after loading.
	r = runEnv(t, map[string]string{"HANGAR_AUTH_USER_TOKEN": "short"}, false, "server", "--hosts.missed_heartbeats=0")
	for _, w := range []string{"auth.user_token: 5 characters", "auth.cluster_token: 0 characters"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q", w)
		}
	}
	if r.code != cli.ExitUsage || strings.Contains(r.stderr, "short") && !strings.Contains(r.stderr, "5 characters") {
		t.Errorf("exit %d", r.code)
	}
}

// TestServerRuns starts the real server through the command tree on a
// local store, lists hosts through the client commands, and stops it with
// the context as SIGINT would.
func TestServerRuns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	stateDir := filepath.Join(t.TempDir(), "state")
	env := map[string]string{
		"HANGAR_AUTH_USER_TOKEN":    testToken,
		"HANGAR_AUTH_CLUSTER_TOKEN": "cluster-token-0123456789",
		"HANGAR_STORE_KIND":         "fs",
		"HANGAR_STORE_DIR":          t.TempDir(),
		"HANGAR_LISTEN":             addr,
		"HANGAR_STATE_DIR":          stateDir,
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"server"}, cli.Options{Stdout: io.Discard, Stderr: &syncWriter{w: &logs},
			LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	}()
	url := "http://" + addr
	var r result
	for range 200 {
		if r = runCLI(t, url, false, "--json", "hosts", "list"); r.code != cli.ExitUnavailable {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	var hosts api.HostList
	if r.code != cli.ExitOK || json.Unmarshal([]byte(r.stdout), &hosts) != nil || hosts.Items == nil {
		t.Fatalf("hosts list against the real server: %d %q %q", r.code, r.stdout, r.stderr)
	}
	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Fatalf("server exit %d\n%s", code, logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("server did not stop")
	}
	// The server was closed on the way out: its catalog cache is on disk.
	if !strings.Contains(logs.String(), `"msg":"server closed","component":"server","catalog_saved":true`) {
		t.Errorf("the server was not closed at exit (catalog cache not written)\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(stateDir, "catalog.json")); err != nil {
		t.Errorf("catalog cache after exit: %v", err)
	}
	// Logs are JSON lines and never hold a token.
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
	if strings.Contains(logs.String(), testToken) || strings.Contains(logs.String(), "cluster-token-0123456789") {
		t.Error("a token reached the logs")
	}
}
