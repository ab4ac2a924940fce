package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/cli"
	"github.com/hangar-vm/hangar/internal/testenv"
)

// cliResult is one run of the CLI binary.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs the hangar binary against the cluster's server with the user
// token, as a user's shell would (HANGAR_SERVER, HANGAR_TOKEN).
func (c *cluster) cli(args ...string) cliResult {
	c.t.Helper()
	return c.cliEnv([]string{"HANGAR_SERVER=" + c.url, "HANGAR_TOKEN=" + c.userToken}, args...)
}

func (c *cluster) cliEnv(env []string, args ...string) cliResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(testenv.ChildEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		c.t.Fatalf("hangar %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// cliJSON runs a --json command that must succeed and decodes its stdout,
// which must be exactly one JSON document.
func cliJSON[T any](c *cluster, args ...string) T {
	c.t.Helper()
	r := c.cli(append([]string{"--json"}, args...)...)
	if r.code != cli.ExitOK {
		c.t.Fatalf("hangar --json %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	var v T
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		c.t.Fatalf("hangar --json %s: stdout is not the API's object: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
	if dec.More() {
		c.t.Fatalf("hangar --json %s: more than one JSON document:\n%s", strings.Join(args, " "), r.stdout)
	}
	return v
}

// cliFails runs a --json command that must fail with exit code want and
// an error object naming code on stderr.
func (c *cluster) cliFails(want int, code string, env []string, args ...string) {
	c.t.Helper()
	if env == nil {
		env = []string{"HANGAR_SERVER=" + c.url, "HANGAR_TOKEN=" + c.userToken}
	}
	r := c.cliEnv(env, append([]string{"--json"}, args...)...)
	var e struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		ExitCode int    `json:"exit_code"`
	}
	if r.code != want || json.Unmarshal([]byte(r.stderr), &e) != nil || e.Code != code || e.ExitCode != want || e.Message == "" || r.stdout != "" {
		c.t.Errorf("hangar --json %s: exit %d, stderr %q, stdout %q; want exit %d and code %q",
			strings.Join(args, " "), r.code, r.stderr, r.stdout, want, code)
	}
}

// waitCLI polls `hangar --json instances get id` until ok holds.
func (c *cluster) waitCLI(id, what string, ok func(api.Instance) bool) api.Instance {
	c.t.Helper()
	deadline := time.Now().Add(opTimeout)
	for {
		in := cliJSON[api.Instance](c, "instances", "get", id)
		if ok(in) {
			return in
		}
		if in.State == api.InstanceStateError || time.Now().After(deadline) {
			c.t.Fatalf("instance %s: not %s: %s", id, what, jsonOf(in))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestCLIFlow is TestAPIFlow through the CLI binary: --json output is
// the API's objects, --wait blocks until the upload or restore is done,
// and failures have the documented exit codes.
func TestCLIFlow(t *testing.T) {
	c := newCluster(t, "host-a", "host-b")

	hosts := cliJSON[api.HostList](c, "hosts", "list")
	if len(hosts.Items) != 2 || hosts.Items[0].Id != "host-a" || hosts.Items[1].Id != "host-b" {
		t.Fatalf("hosts list: %s", jsonOf(hosts))
	}

	in := cliJSON[api.Instance](c, "instances", "create", "cli-1", "--memory", "128", "--host", "host-a")
	id := in.Id
	in = c.waitCLI(id, "Running", running)
	if deref(in.Host) != "host-a" {
		t.Fatalf("created on %q", deref(in.Host))
	}
	m := mark(t, c.agentOf("host-a", id))

	in = cliJSON[api.Instance](c, "instances", "standby", id, "--wait")
	if !standbyCentral(in) {
		t.Fatalf("standby --wait returned before central: %s", jsonOf(in))
	}

	in = cliJSON[api.Instance](c, "instances", "restore", id, "--host", "host-b", "--wait")
	if in.State != api.InstanceStateRunning || deref(in.Host) != "host-b" {
		t.Fatalf("restore --wait: %s", jsonOf(in))
	}
	checkMark(t, c.agentOf("host-b", id), m, "after restore on host-b")
	c.closeAgents()

	// Exit codes scripts rely on.
	c.cliFails(cli.ExitConflict, string(api.ErrorCodeInvalidState), nil, "instances", "restore", id)
	c.cliFails(cli.ExitNotFound, string(api.ErrorCodeNotFound), nil, "instances", "get", "i-0000000000000000")
	c.cliFails(cli.ExitUsage, string(api.ErrorCodeInvalidRequest), nil, "instances", "create", "Bad_Name")
	c.cliFails(cli.ExitUnauthorized, string(api.ErrorCodeUnauthorized), []string{"HANGAR_SERVER=" + c.url, "HANGAR_TOKEN=wrong-token-0123456789"}, "instances", "list")

	in = cliJSON[api.Instance](c, "instances", "standby", id, "--wait")
	if !standbyCentral(in) || in.SnapshotId == nil {
		t.Fatalf("second standby --wait: %s", jsonOf(in))
	}
	snap := cliJSON[api.Snapshot](c, "snapshots", "get", *in.SnapshotId)
	if snap.State != api.SnapshotStateCentral || snap.InstanceId != id || snap.Compression == nil {
		t.Fatalf("snapshots get: %s", jsonOf(snap))
	}

	fork := cliJSON[api.Instance](c, "instances", "fork", id, "--name", "cli-1-fork", "--host", "host-a")
	fork = c.waitCLI(fork.Id, "Running", running)
	if deref(fork.Host) != "host-a" {
		t.Fatalf("fork on %q", deref(fork.Host))
	}
	checkMark(t, c.agentOf("host-a", fork.Id), m, "fork on host-a")
	c.closeAgents()

	list := cliJSON[api.InstanceList](c, "instances", "list")
	if len(list.Items) != 2 {
		t.Fatalf("instances list: %s", jsonOf(list))
	}
	table := c.cli("instances", "list")
	if table.code != cli.ExitOK || !strings.Contains(table.stdout, "cli-1-fork") || !strings.Contains(table.stdout, "Standby") ||
		!strings.Contains(table.stdout, "Running") || !strings.HasPrefix(table.stdout, "ID") {
		t.Errorf("instances list table: %d %q %q", table.code, table.stdout, table.stderr)
	}
	snaps := cliJSON[api.SnapshotList](c, "snapshots", "list", "--instance", id)
	if len(snaps.Items) == 0 {
		t.Fatal("snapshots list --instance: empty")
	}

	for _, i := range []string{fork.Id, id} {
		if r := c.cli("instances", "delete", i); r.code != cli.ExitOK {
			t.Fatalf("instances delete %s: exit %d: %s", i, r.code, r.stderr)
		}
	}
	c.cliFails(cli.ExitNotFound, string(api.ErrorCodeNotFound), nil, "instances", "get", id)
	if l := cliJSON[api.InstanceList](c, "instances", "list"); len(l.Items) != 0 {
		t.Fatalf("instances after delete: %s", jsonOf(l))
	}

	c.stopHost("host-a")
	c.stopHost("host-b")
}
