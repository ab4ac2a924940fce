package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/internal/cli"
)

// TestHostPrintConfig: file < env < flags, defaults filled in, secrets
// redacted. (The daemon itself runs in the integration tests, as the
// `hangar host` binary.)
func TestHostPrintConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "host.yaml")
	if err := os.WriteFile(file, []byte(`
host_id: file-host
cluster_token: file-cluster-token-0123456789
data_dir: /var/lib/hangar/a
qemu: {accel: tcg}
store:
  s3: {endpoint: "127.0.0.1:9000", bucket: hangar-b, access_key: ak, secret_key: file-secret-key-0123}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"HANGAR_HOST_ID":             "env-host", // env over file
		"HANGAR_CAPACITY_MEMORY_MIB": "2048",
		"HANGAR_SERVER_URL":          "http://127.0.0.1:7070",
	}
	r := runEnv(t, env, false, "host", "--config", file, "--print-config", "--capacity.vcpus", "3", "--listen=127.0.0.1:7999")
	if r.code != cli.ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, w := range []string{"host_id: env-host", "listen: 127.0.0.1:7999", "memory_mib: 2048", "vcpus: 3", "accel: tcg",
		"data_dir: /var/lib/hangar/a", "cluster_token: '[redacted]'", "secret_key: '[redacted]'", "endpoint: 127.0.0.1:9000",
		"upload_concurrency: 2", "server_url: http://127.0.0.1:7070"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("effective config lacks %q:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "file-cluster-token") || strings.Contains(r.stdout, "file-secret-key") {
		t.Error("--print-config shows a secret")
	}
}

func TestHostConfigErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "host.yaml")
	if err := os.WriteFile(file, []byte("hostid: x\ncapacity:\n  vcpus: lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runEnv(t, map[string]string{}, false, "host", "--config", file)
	for _, w := range []string{`unknown key "hostid" (did you mean "host_id"?)`, `capacity.vcpus: invalid value "lots"`} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q: %s", w, r.stderr)
		}
	}
	if r.code != cli.ExitUsage {
		t.Errorf("exit %d", r.code)
	}
	// Validate reports every problem at once, and never echoes a secret.
	r = runEnv(t, map[string]string{"HANGAR_CLUSTER_TOKEN": "shortsecret"}, false, "host", "--data_dir", "relative", "--qemu.accel", "hvf")
	for _, w := range []string{"host_id:", "cluster_token: 11 characters", `data_dir: "relative" is not absolute`, "store: no store given", "hvf"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q: %s", w, r.stderr)
		}
	}
	if r.code != cli.ExitUsage || strings.Contains(r.stderr, "shortsecret") {
		t.Errorf("exit %d, stderr %s", r.code, r.stderr)
	}
}

func TestDevFlagErrors(t *testing.T) {
	r := runEnv(t, map[string]string{}, false, "dev", "--hosts", "17", "--accel", "hvf", "--dir", t.TempDir())
	for _, w := range []string{"hosts: 17, want 1-16", `accel: "hvf"`} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q: %s", w, r.stderr)
		}
	}
	if r.code != cli.ExitUsage {
		t.Errorf("exit %d", r.code)
	}
}
