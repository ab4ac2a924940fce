package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/cli"
)

func TestTables(t *testing.T) {
	url := serve(t, newFake())
	tests := []struct {
		args []string
		want []string // substrings of stdout
	}{
		{[]string{"instances", "list"}, []string{"ID", "NAME", "STATE", "STORAGE", "i-1", "box", "Running", "h-1", "256 MiB", "i-2", "Standby", "central"}},
		{[]string{"instances", "get", "i-2"}, []string{"ID:", "i-2", "Storage:", "central", "Snapshot:", "s-1", "Memory:", "512 MiB"}},
		{[]string{"snapshots", "list"}, []string{"ID", "COMPRESSION", "s-1", "parked-standby-1", "zstd:1", "512 MiB"}},
		{[]string{"snapshots", "get", "s-1"}, []string{"State:", "central", "Compression:", "zstd:1"}},
		{[]string{"hosts", "list"}, []string{"ID", "STATE", "h-1", "available", "http://127.0.0.1:7081", "3.8 GiB/4.0 GiB", "3/4", "3.0 MiB"}},
		{[]string{"instances", "delete", "i-1"}, []string{"deleted instance i-1"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runCLI(t, url, false, tt.args...)
			if r.code != cli.ExitOK || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q", w)
				}
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	url := serve(t, newFake())
	tests := []struct {
		args  []string
		into  any
		check func(v any) bool
	}{
		{[]string{"instances", "list"}, &api.InstanceList{}, func(v any) bool { return len(v.(*api.InstanceList).Items) == 2 }},
		{[]string{"instances", "get", "i-1"}, &api.Instance{}, func(v any) bool { return v.(*api.Instance).State == api.InstanceStateRunning }},
		{[]string{"instances", "create", "web-1", "--memory", "1024", "--vcpus", "2", "--compression", "lz4", "--compression-level", "3"}, &api.Instance{},
			func(v any) bool {
				i := v.(*api.Instance)
				c := i.SnapshotPolicy.Compression
				return i.Name == "web-1" && i.MemoryMib == 1024 && *c.Algorithm == "lz4" && *c.Level == 3 && c.Enabled == nil
			}},
		{[]string{"snapshots", "list"}, &api.SnapshotList{}, func(v any) bool { return v.(*api.SnapshotList).Items[0].Id == "s-1" }},
		{[]string{"snapshots", "fork", "s-1", "--name", "copy"}, &api.Instance{}, func(v any) bool { return v.(*api.Instance).Name == "copy" }},
		{[]string{"hosts", "list"}, &api.HostList{}, func(v any) bool { return v.(*api.HostList).Items[0].Free.Vcpus == 3 }},
		{[]string{"instances", "delete", "i-1"}, &map[string]any{}, func(v any) bool { m := *v.(*map[string]any); return m["id"] == "i-1" && m["deleted"] == true }},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runCLI(t, url, true, append([]string{"--json"}, tt.args...)...)
			if r.code != cli.ExitOK {
				t.Fatalf("exit %d", r.code)
			}
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(tt.into); err != nil {
				t.Fatalf("stdout is not the API object: %v", err)
			}
			if dec.More() {
				t.Fatal("more than one JSON document on stdout")
			}
			if !tt.check(tt.into) {
				t.Errorf("unexpected content %+v", tt.into)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	url := serve(t, newFake())
	tests := []struct {
		name   string
		env    map[string]string // nil: server and right token
		args   []string
		code   int
		stderr string // substring
	}{
		{"not found", nil, []string{"instances", "get", "i-9"}, cli.ExitNotFound, "hangar: instance i-9: not found (not_found)"},
		{"snapshot not found", nil, []string{"snapshots", "delete", "s-9"}, cli.ExitNotFound, "snapshot s-9: not found"},
		{"invalid state", nil, []string{"instances", "standby", "i-2"}, cli.ExitConflict, "instance i-2 is Standby: standby needs Running (invalid_state)"},
		{"conflict", nil, []string{"snapshots", "delete", "s-1"}, cli.ExitConflict, "(conflict)"},
		{"no capacity", nil, []string{"instances", "create", "x", "--host", "full"}, cli.ExitUnavailable, "host full: 0 MiB free, 256 MiB asked (no_capacity)"},
		{"host unavailable", nil, []string{"instances", "restore", "i-2", "--host", "gone"}, cli.ExitUnavailable, "(host_unavailable)"},
		{"wrong token", map[string]string{"HANGAR_SERVER": url, "HANGAR_TOKEN": "nope"}, []string{"hosts", "list"}, cli.ExitUnauthorized, "missing or wrong bearer token (unauthorized)"},
		{"no token", map[string]string{"HANGAR_SERVER": url}, []string{"instances", "list"}, cli.ExitUnauthorized, "(unauthorized)"},
		{"bad level from server", nil, []string{"instances", "standby", "i-1", "--compression", "zstd", "--compression-level", "25"}, cli.ExitUsage, "compression.level: 25 is out of range for zstd (1-19) (invalid_snapshot_compression)"},
		{"unreachable", map[string]string{"HANGAR_SERVER": "http://127.0.0.1:1"}, []string{"hosts", "list"}, cli.ExitUnavailable, "server unreachable"},
		{"unknown flag", nil, []string{"instances", "list", "--bogus"}, cli.ExitUsage, "unknown flag: --bogus"},
		{"missing arg", nil, []string{"instances", "get"}, cli.ExitUsage, "accepts 1 arg(s), received 0"},
		{"unknown command", nil, []string{"instances", "launch"}, cli.ExitUsage, `unknown command "launch" for "hangar instances"`},
		{"unknown top command", nil, []string{"fly"}, cli.ExitUsage, `unknown command "fly" for "hangar"`},
		{"bad id", nil, []string{"instances", "get", "../etc"}, cli.ExitUsage, `invalid instance id "../etc"`},
		{"missing name", nil, []string{"snapshots", "fork", "s-1"}, cli.ExitUsage, `required flag(s) "name" not set`},
		{"bad state filter", nil, []string{"instances", "list", "--state", "Parked"}, cli.ExitUsage, `--state "Parked"`},
		{"bad kind", nil, []string{"snapshots", "create", "i-1", "--name", "x", "--kind", "hot"}, cli.ExitUsage, `--kind "hot"`},
		{"contradicting compression", nil, []string{"instances", "standby", "i-1", "--no-compression", "--compression", "lz4"}, cli.ExitUsage, "--no-compression excludes"},
		{"bad server URL", map[string]string{"HANGAR_SERVER": "127.0.0.1:7070"}, []string{"hosts", "list"}, cli.ExitUsage, `server: "127.0.0.1:7070" is not an http:// or https:// URL`},
		{"bad timeout env", map[string]string{"HANGAR_SERVER": url, "HANGAR_TIMEOUT": "soon"}, []string{"hosts", "list"}, cli.ExitUsage, `env HANGAR_TIMEOUT: timeout: invalid value "soon"`},
		{"bad flag value", nil, []string{"instances", "create", "x", "--memory", "lots"}, cli.ExitUsage, `invalid argument "lots" for "--memory"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == nil {
				env = map[string]string{"HANGAR_SERVER": url, "HANGAR_TOKEN": testToken}
			}
			r := runEnv(t, env, false, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d", r.code, tt.code)
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tt.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty on error: %q", r.stdout)
			}
			// The same failure with --json: one JSON error object on
			// stderr with the same exit code, nothing on stdout.
			r = runEnv(t, env, false, append([]string{"--json"}, tt.args...)...)
			var doc struct {
				Code     string `json:"code"`
				Message  string `json:"message"`
				ExitCode int    `json:"exit_code"`
			}
			if err := json.Unmarshal([]byte(r.stderr), &doc); err != nil || doc.ExitCode != tt.code || r.code != tt.code || doc.Message == "" || r.stdout != "" {
				t.Errorf("--json: exit %d, stderr %q (%v)", r.code, r.stderr, err)
			}
		})
	}
}

func TestFlagOverEnv(t *testing.T) {
	url := serve(t, newFake())
	// HANGAR_SERVER points nowhere; --server wins.
	r := runEnv(t, map[string]string{"HANGAR_SERVER": "http://127.0.0.1:1", "HANGAR_TOKEN": "wrong"}, false,
		"hosts", "list", "--server", url, "--token", testToken)
	if r.code != cli.ExitOK || !strings.Contains(r.stdout, "h-1") {
		t.Fatalf("flags did not override env: %d %q", r.code, r.stderr)
	}
}

func TestRequestBodies(t *testing.T) {
	f := newFake()
	url := serve(t, f)
	if r := runCLI(t, url, false, "instances", "standby", "i-1"); r.code != cli.ExitOK {
		t.Fatalf("standby: %d", r.code)
	}
	if f.lastStandby == nil || f.lastStandby.Compression != nil {
		t.Errorf("standby without flags sent %+v, want no compression override", f.lastStandby)
	}
	if r := runCLI(t, url, false, "instances", "create", "x", "--no-compression"); r.code != cli.ExitOK {
		t.Fatalf("create: %d", r.code)
	}
	c := f.lastCreate.SnapshotPolicy.Compression
	if c.Enabled == nil || *c.Enabled || c.Algorithm != nil || c.Level != nil {
		t.Errorf("--no-compression sent %+v", c)
	}
	if f.lastCreate.Image != "default" || f.lastCreate.MemoryMib != 256 || f.lastCreate.Vcpus != 1 {
		t.Errorf("defaults: %+v", f.lastCreate)
	}
}

func TestStandbyWait(t *testing.T) {
	for _, terminal := range []bool{true, false} {
		name := "no terminal"
		if terminal {
			name = "terminal"
		}
		t.Run(name, func(t *testing.T) {
			f := newFake()
			url := serve(t, f)
			r := runCLI(t, url, terminal, "instances", "standby", "i-1", "--wait")
			if r.code != cli.ExitOK {
				t.Fatalf("exit %d", r.code)
			}
			if f.polls < 4 || f.snapshots["s-2"].State != api.SnapshotStateCentral {
				t.Fatalf("returned before central: %d polls, state %s", f.polls, f.snapshots["s-2"].State)
			}
			if !strings.Contains(r.stdout, "central") {
				t.Errorf("final instance not shown central")
			}
			bar := strings.Contains(r.stderr, "uploading s-2") && strings.Contains(r.stderr, "256 MiB")
			if bar != terminal {
				t.Errorf("progress bar on stderr: %v, want %v", bar, terminal)
			}
		})
	}
}

func TestStandbyWaitJSON(t *testing.T) {
	f := newFake()
	url := serve(t, f)
	r := runCLI(t, url, true, "--json", "instances", "standby", "i-1", "--wait")
	var i api.Instance
	if r.code != cli.ExitOK || json.Unmarshal([]byte(r.stdout), &i) != nil || i.Storage == nil || *i.Storage != api.SnapshotStateCentral {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("--json drew on stderr: %q", r.stderr)
	}
}

func TestSnapshotWaitFails(t *testing.T) {
	f := newFake()
	f.failUpload = true
	url := serve(t, f)
	r := runCLI(t, url, false, "instances", "standby", "i-1", "--wait")
	if r.code != cli.ExitError || !strings.Contains(r.stderr, "snapshot s-2: upload failed: put chunk 3f2a: connection reset") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestWaitTimeout(t *testing.T) {
	f := newFake()
	url := serve(t, f)
	// s-2 never finishes if nothing polls it to the end: a tiny timeout
	// with a slow poll gives up and says where it was.
	if r := runCLI(t, url, false, "instances", "standby", "i-1"); r.code != 0 {
		t.Fatal(r.code)
	}
	r := runCLI(t, url, false, "snapshots", "get", "s-2", "--wait", "--wait-timeout", "1ns")
	if r.code != cli.ExitError || !strings.Contains(r.stderr, "gave up waiting") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestRestoreWait(t *testing.T) {
	f := newFake()
	url := serve(t, f)
	r := runCLI(t, url, true, "instances", "restore", "i-2", "--wait")
	if r.code != cli.ExitOK || !strings.Contains(r.stdout, "Running") {
		t.Fatalf("exit %d", r.code)
	}
	if !strings.Contains(r.stderr, "restoring i-2") {
		t.Errorf("no restore progress bar: %q", r.stderr)
	}
	if f.instances["i-2"].State != api.InstanceStateRunning {
		t.Errorf("returned before the restore finished")
	}
}

func TestStoreCommands(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"HANGAR_STORE_DIR": dir}
	r := runEnv(t, env, false, "--json", "store", "gc", "--grace", "0")
	var gc map[string]any
	if r.code != cli.ExitOK || json.Unmarshal([]byte(r.stdout), &gc) != nil || gc["deleted_chunks"] != 0.0 {
		t.Fatalf("gc on an empty store: %d %q", r.code, r.stdout)
	}
	r = runEnv(t, env, false, "store", "verify")
	if r.code != cli.ExitOK || !strings.Contains(r.stdout, "no problems found") {
		t.Fatalf("verify empty: %d", r.code)
	}
	// A manifest that does not parse is damage: exit 7, named.
	bad := filepath.Join(dir, "snapshots", "s-bad", "manifest.json")
	if err := os.MkdirAll(filepath.Dir(bad), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runEnv(t, env, false, "store", "verify")
	if r.code != cli.ExitDamaged || !strings.Contains(r.stdout, "bad manifest: snapshot s-bad") {
		t.Fatalf("verify damaged: %d", r.code)
	}
	// GC refuses to sweep when a manifest is unreadable.
	r = runEnv(t, env, false, "store", "gc", "--dry-run")
	if r.code != cli.ExitError {
		t.Fatalf("gc with a bad manifest: %d", r.code)
	}
	// No store configured: a usage error that says how to give one.
	r = runEnv(t, map[string]string{}, false, "store", "gc")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "HANGAR_STORE_DIR") {
		t.Fatalf("no store: %d %q", r.code, r.stderr)
	}
	// The file layer: a store.yaml with a typo is named.
	cfg := filepath.Join(t.TempDir(), "store.yaml")
	if err := os.WriteFile(cfg, []byte("store:\n  dri: /x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runEnv(t, map[string]string{}, false, "store", "verify", "--config", cfg)
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, `unknown key "store.dri" (did you mean "store.dir"?)`) {
		t.Fatalf("typo: %d %q", r.code, r.stderr)
	}
}
