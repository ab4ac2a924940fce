package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeQMP serves one connection with a scripted QEMU: it greets, accepts
// qmp_capabilities, answers query-status, fails anything else, sends an
// event before each answer, and hangs up on "quit". The real QEMU is in
// qemu_test.go; this pins the client's edge cases.
func fakeQMP(t *testing.T) string {
	t.Helper()
	dir, _ := os.MkdirTemp("", "qmp")
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qmp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				Execute string `json:"execute"`
				ID      string `json:"id"`
			}
			json.Unmarshal(line, &req)
			c.Write([]byte(`{"event": "STOP", "data": {}, "timestamp": {}}` + "\n"))
			id, _ := json.Marshal(req.ID)
			switch req.Execute {
			case "qmp_capabilities":
				c.Write([]byte(`{"return": {}, "id": ` + string(id) + "}\n"))
			case "query-status":
				c.Write([]byte(`{"return": {"status": "running", "running": true}, "id": ` + string(id) + "}\n"))
			case "quit":
				return
			case "hang":
			default:
				c.Write([]byte(`{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": ` + string(id) + "}\n"))
			}
		}
	}()
	return sock
}

func TestQMPClient(t *testing.T) {
	sock := fakeQMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := make(chan string, 16)
	c, err := dialQMP(ctx, sock, nil, func(e qmpEvent) { events <- e.Event })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.execute(ctx, "query-status", nil, &st); err != nil || st.Status != "running" || !st.Running {
		t.Fatalf("query-status = %+v, %v", st, err)
	}
	if ev := <-events; ev != "STOP" {
		t.Fatalf("event = %q", ev)
	}
	var qe *QMPError
	if err := c.execute(ctx, "frobnicate", map[string]int{"x": 1}, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "frobnicate" {
		t.Fatalf("unknown command: %v", err)
	}
	short, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if err := c.execute(short, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered command: %v", err)
	}
	scancel()
	c.execute(ctx, "quit", nil, nil)
	if err := c.execute(ctx, "query-status", nil, nil); !errors.Is(err, errQMPClosed) {
		t.Fatalf("after hang-up: %v, want errQMPClosed", err)
	}
}

func TestQMPDialGivesUp(t *testing.T) {
	abort := make(chan struct{})
	close(abort)
	if _, err := dialQMP(context.Background(), filepath.Join(t.TempDir(), "none"), abort, nil); !errors.Is(err, errQMPClosed) {
		t.Fatalf("dial with the process gone: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := dialQMP(ctx, filepath.Join(t.TempDir(), "none"), nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial until the deadline: %v", err)
	}
}
