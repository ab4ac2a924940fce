package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// guest connects to the guest agent of a running instance: the API says
// which host runs it, that host's data directory holds the instance's
// metadata with the host side of the agent's serial port. The caller
// closes the client (QEMU's socket takes one client at a time).
func (s *Stack) guest(t *testing.T, id string) *agent.Client {
	t.Helper()
	in := s.instance(t, id)
	if in.State != api.InstanceStateRunning || in.Host == nil {
		t.Fatalf("instance %s is %s on %s: not a running guest", id, in.State, str(in.Host))
	}
	h := s.Host(t, *in.Host)
	path := filepath.Join(h.DataDir, "i", id, "instance.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("instance %s on host %s: %v", id, h.ID, err)
	}
	var meta struct {
		AgentSocket string `json:"agent_socket"`
	}
	if err := json.Unmarshal(b, &meta); err != nil || meta.AgentSocket == "" {
		t.Fatalf("instance %s on host %s: no agent socket in %s (%v): %s", id, h.ID, path, err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := agent.Dial(ctx, meta.AgentSocket)
	if err != nil {
		t.Fatalf("instance %s on host %s: dial guest agent: %v", id, h.ID, err)
	}
	return c
}

// mark is state that exists only in a guest's RAM: a token written to
// its tmpfs, its boot id and its counter at the time.
type mark struct {
	file    string
	token   string
	bootID  string
	counter uint64
}

// setMark writes a fresh token to /tmp/<name> in the guest and reads its
// in-memory state.
func (s *Stack) setMark(t *testing.T, id, name string) mark {
	t.Helper()
	c := s.guest(t, id)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := mark{file: "/tmp/" + name, token: name + "-" + randomHex(12)}
	if err := c.WriteFile(ctx, m.file, []byte(m.token), 0o644); err != nil {
		t.Fatalf("instance %s: write %s: %v", id, m.file, err)
	}
	st, err := c.State(ctx)
	if err != nil {
		t.Fatalf("instance %s: guest state: %v", id, err)
	}
	m.bootID, m.counter = st.BootID, st.Counter
	return m
}

// checkMarks proves the guest's RAM came back: every token is still in
// its file, the boot id is the one of the marks (the guest did not boot
// again) and the counter did not go back. It returns the state read.
func (s *Stack) checkMarks(t *testing.T, id string, marks ...mark) agent.State {
	t.Helper()
	c := s.guest(t, id)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := c.State(ctx)
	if err != nil {
		t.Fatalf("instance %s: guest state: %v", id, err)
	}
	for _, m := range marks {
		got, err := c.ReadFile(ctx, m.file)
		if err != nil {
			t.Errorf("instance %s: read %s: %v (the guest's RAM did not survive)", id, m.file, err)
		} else if string(got) != m.token {
			t.Errorf("instance %s: %s holds %q, want %q", id, m.file, got, m.token)
		}
		if st.BootID != m.bootID {
			t.Errorf("instance %s: boot id %s, want %s (the guest booted afresh)", id, st.BootID, m.bootID)
		}
		if st.Counter < m.counter {
			t.Errorf("instance %s: counter %d went back from %d", id, st.Counter, m.counter)
		}
	}
	return st
}

// exec runs a shell command in the guest, failing t if it fails.
func (s *Stack) exec(t *testing.T, id, script string) string {
	t.Helper()
	c := s.guest(t, id)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", script}, Timeout: 240})
	if err != nil {
		t.Fatalf("instance %s: exec %q: %v", id, script, err)
	}
	if r.ExitCode != 0 {
		t.Fatalf("instance %s: exec %q: exit %d, stderr %s", id, script, r.ExitCode, r.Stderr)
	}
	return strings.TrimSpace(string(r.Stdout))
}

// fillRandom writes mib MiB of random bytes to /tmp/<name> in the guest:
// RAM that neither compresses nor deduplicates, to give uploads a size.
func (s *Stack) fillRandom(t *testing.T, id, name string, mib int) {
	t.Helper()
	s.exec(t, id, fmt.Sprintf("dd if=/dev/urandom of=/tmp/%s bs=1M count=%d 2>/dev/null && sync", name, mib))
}
