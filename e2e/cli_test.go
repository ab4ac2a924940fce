package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/testenv"
)

// cliResult is one run of the hangar CLI.
type cliResult struct {
	args   []string
	code   int
	stdout string
	stderr string
	took   time.Duration
}

func (r cliResult) String() string {
	return fmt.Sprintf("hangar %s: exit %d after %v\nstdout: %s\nstderr: %s",
		strings.Join(r.args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// cliEnv points the client commands at the server and the store commands
// at the bucket, the way a user's shell would.
func (s *Stack) cliEnv() []string {
	return []string{
		"HANGAR_SERVER=" + s.ServerURL,
		"HANGAR_TOKEN=" + s.UserToken,
		"HANGAR_TIMEOUT=15m",
		"HANGAR_STORE_KIND=s3",
		"HANGAR_STORE_S3_ENDPOINT=" + s.MinIO.Endpoint,
		"HANGAR_STORE_S3_BUCKET=" + bucket,
		"HANGAR_STORE_S3_ACCESS_KEY=" + s.MinIO.AccessKey,
		"HANGAR_STORE_S3_SECRET_KEY=" + s.MinIO.SecretKey,
	}
}

// run runs the CLI with args and returns how it ended; it fails t only
// when the binary cannot run at all.
func (s *Stack) run(t *testing.T, args ...string) cliResult {
	t.Helper()
	r, err := s.runE(args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runE is run for goroutines, which must not call t.Fatal.
func (s *Stack) runE(args ...string) (cliResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hangarBin, args...)
	cmd.Env = append(testenv.ChildEnv(), s.cliEnv()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		return r, fmt.Errorf("hangar %s: %w", strings.Join(args, " "), err)
	}
	return r, nil
}

// cli runs the CLI with --json, requires success and decodes stdout into
// out (if not nil).
func (s *Stack) cli(t *testing.T, out any, args ...string) cliResult {
	t.Helper()
	r := s.run(t, append([]string{"--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
			t.Fatalf("%v\ndecode stdout: %v", r, err)
		}
	}
	return r
}

// create boots an instance on host (any host when empty) and deletes it
// when the test ends.
func (s *Stack) create(t *testing.T, name, host string, flags ...string) api.Instance {
	t.Helper()
	args := []string{"instances", "create", name, "--memory", fmt.Sprint(guestMiB), "--vcpus", "1"}
	if host != "" {
		args = append(args, "--host", host)
	}
	var in api.Instance
	r := s.cli(t, &in, append(args, flags...)...)
	s.deleteAtEnd(t, in.Id)
	if in.State != api.InstanceStateRunning {
		t.Fatalf("created instance %s is %s, want Running", in.Id, in.State)
	}
	t.Logf("created %s (%s) on %s in %v", in.Name, in.Id, str(in.Host), r.took.Round(time.Millisecond))
	return in
}

// deleteAtEnd deletes the instance through the API when the test ends
// (a test that failed half-way must not leave guests running for the
// next one).
func (s *Stack) deleteAtEnd(t *testing.T, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rsp, err := s.API.DeleteInstanceWithResponse(ctx, id)
		if err != nil {
			t.Logf("cleanup: delete instance %s: %v", id, err)
			return
		}
		if c := rsp.StatusCode(); c != 204 && c != 404 {
			t.Logf("cleanup: delete instance %s: %s %s", id, rsp.Status(), rsp.Body)
		}
	})
}

// instance reads an instance through the API.
func (s *Stack) instance(t *testing.T, id string) api.Instance {
	t.Helper()
	rsp, err := s.API.GetInstanceWithResponse(context.Background(), id)
	if err != nil {
		t.Fatalf("get instance %s: %v", id, err)
	}
	if rsp.JSON200 == nil {
		t.Fatalf("get instance %s: %s %s", id, rsp.Status(), rsp.Body)
	}
	return *rsp.JSON200
}

// snapshot reads a snapshot through the API.
func (s *Stack) snapshot(t *testing.T, id string) api.Snapshot {
	t.Helper()
	rsp, err := s.API.GetSnapshotWithResponse(context.Background(), id)
	if err != nil {
		t.Fatalf("get snapshot %s: %v", id, err)
	}
	if rsp.JSON200 == nil {
		t.Fatalf("get snapshot %s: %s %s", id, rsp.Status(), rsp.Body)
	}
	return *rsp.JSON200
}

// waitCentral polls the snapshot until it is central, failing on error
// state or after opTimeout.
func (s *Stack) waitCentral(t *testing.T, id string) api.Snapshot {
	t.Helper()
	deadline := time.Now().Add(uploadTimeout)
	for {
		sn := s.snapshot(t, id)
		switch sn.State {
		case api.SnapshotStateCentral:
			return sn
		case api.SnapshotStateError:
			t.Fatalf("snapshot %s: upload failed: %s", id, str(sn.Error))
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot %s still %s after %v: %+v", id, sn.State, uploadTimeout, sn)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hosts lists the hosts through the CLI.
func (s *Stack) hostStates(t *testing.T) map[string]api.Host {
	t.Helper()
	var l api.HostList
	s.cli(t, &l, "hosts", "list")
	m := map[string]api.Host{}
	for _, h := range l.Items {
		m[h.Id] = h
	}
	return m
}

// verify runs `hangar store verify --json` on the snapshots (all when
// none are named) and returns its report, failing t on damage.
func (s *Stack) verify(t *testing.T, snapshots ...string) verifyReport {
	t.Helper()
	var rep verifyReport
	r := s.run(t, append([]string{"--json", "store", "verify"}, snapshots...)...)
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\ndecode: %v", r, err)
	}
	if r.code != 0 {
		t.Fatalf("store verify found damage: %v", r)
	}
	return rep
}

// verifyReport is the --json document of `hangar store verify`
// (storage/snapshot.VerifyReport).
type verifyReport struct {
	Snapshots int             `json:"snapshots"`
	Chunks    int             `json:"chunks"`
	Bytes     int64           `json:"stored_bytes"`
	Missing   json.RawMessage `json:"missing"`
	Corrupt   json.RawMessage `json:"corrupt"`
}

// gcReport is the --json document of `hangar store gc`.
type gcReport struct {
	DryRun     bool  `json:"dry_run"`
	Snapshots  int   `json:"snapshots"`
	Referenced int   `json:"referenced_chunks"`
	Chunks     int   `json:"chunks"`
	Deleted    int   `json:"deleted_chunks"`
	BytesFreed int64 `json:"bytes_freed"`
	KeptYoung  int   `json:"kept_young_chunks"`
	Missing    int   `json:"missing_chunks"`
}

func str(p *string) string {
	if p == nil {
		return "<none>"
	}
	return *p
}

func i64(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}
