package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve runs an agent on a real unix socket (the transport the host uses),
// one connection at a time, like QEMU's socket chardev.
func serve(t *testing.T) (string, *Agent) {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := New(ctx)
	a.uptime = func() (float64, error) { return 42, nil }
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			a.Serve(ctx, c)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		cancel()
		l.Close()
		<-done
		os.RemoveAll(dir)
	})
	return sock, a
}

func TestClientServer(t *testing.T) {
	sock, a := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	st, err := c.State(ctx)
	if err != nil || st.BootID != a.bootID || st.Uptime != 42 {
		t.Fatalf("state = %+v, %v", st, err)
	}
	res, err := c.Exec(ctx, ExecRequest{Argv: []string{"cat"}, Stdin: []byte("in\x00put")})
	if err != nil || res.ExitCode != 0 || string(res.Stdout) != "in\x00put" {
		t.Fatalf("exec cat = %+v, %v", res, err)
	}
	res, err = c.Exec(ctx, ExecRequest{Argv: []string{"sh", "-c", "head -c 2000000 /dev/zero"}})
	if err != nil || !res.Truncated || len(res.Stdout) != MaxOutput {
		t.Fatalf("exec with big output: truncated %v, %d bytes, %v", res.Truncated, len(res.Stdout), err)
	}

	path := filepath.Join(t.TempDir(), "f")
	data := bytes.Repeat([]byte{0, 1, 2, 255, '\n'}, 1000)
	if err := c.WriteFile(ctx, path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v, %v", st, err)
	}
	got, err := c.ReadFile(ctx, path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}

	for _, tc := range []struct {
		name string
		call func() error
		code string
	}{
		{"relative path", func() error { _, err := c.ReadFile(ctx, "rel"); return err }, CodeInvalidRequest},
		{"missing file", func() error { _, err := c.ReadFile(ctx, "/no/such/file"); return err }, CodeNotFound},
		{"missing dir", func() error { return c.WriteFile(ctx, "/no/such/dir/f", nil, 0) }, CodeNotFound},
		{"empty argv", func() error { _, err := c.Exec(ctx, ExecRequest{}); return err }, CodeInvalidRequest},
		{"too large", func() error { return c.WriteFile(ctx, path, make([]byte, MaxFileSize+1), 0) }, CodeTooLarge},
		{"unknown op", func() error { return c.call(ctx, "reboot", nil, nil) }, CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ae *Error
			if err := tc.call(); !errors.As(err, &ae) || ae.Code != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
		})
	}

	// A long exec does not hold up other requests.
	slow := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, ExecRequest{Argv: []string{"sleep", "2"}})
		slow <- err
	}()
	time.Sleep(100 * time.Millisecond)
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	if _, err := c.Ping(pctx); err != nil {
		t.Fatalf("ping during a long exec: %v", err)
	}
	pcancel()
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// TestNoiseIgnored: echoed requests, junk and stale answers on the line are
// never taken for an answer.
func TestNoiseIgnored(t *testing.T) {
	dir, _ := os.MkdirTemp("", "agent")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if strings.TrimSpace(line) == "" {
					continue
				}
				// Echo (a cooked tty), junk, a stale answer, then the answer.
				c.Write([]byte(line + "\n\x00garbage{\n{\"type\":\"response\",\"id\":999,\"result\":{\"version\":\"stale\"}}\n"))
				c.Write([]byte(strings.Replace(line, `"type":"request"`, `"type":"response","result":{"version":"real"}`, 1) + "\n"))
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &Client{path: sock}
	defer c.Close()
	p, err := c.Ping(ctx)
	if err != nil || p.Version != "real" {
		t.Fatalf("ping = %+v, %v", p, err)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, filepath.Join(t.TempDir(), "missing.sock"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("dial of a missing socket: %v", err)
	}
}

// FuzzServe: whatever arrives on the serial line, the agent neither panics
// nor answers anything but well-formed responses.
func FuzzServe(f *testing.F) {
	f.Add([]byte(`{"type":"request","id":1,"op":"ping"}` + "\n"))
	f.Add([]byte(`{"type":"request","id":2,"op":"read_file","args":{"path":"/nonexistent"}}` + "\n"))
	f.Add([]byte(`{"type":"request","id":3,"op":"exec","args":{"argv":[]}}` + "\n{\n\x00\xff"))
	f.Add([]byte(`{"type":"request","id":4,"op":"write_file","args":"x"}` + "\n"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := New(ctx)
	f.Fuzz(func(t *testing.T, in []byte) {
		// exec and write_file would act on the host running the fuzzer.
		if bytes.Contains(in, []byte("exec")) || bytes.Contains(in, []byte("write")) {
			return
		}
		var out bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), &out}
		if err := a.Serve(ctx, rw); err == nil {
			t.Fatal("Serve returned nil at EOF")
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if line != "" && !strings.HasPrefix(line, `{"type":"response"`) {
				t.Fatalf("bad output line %q", line)
			}
		}
	})
}

func TestReadLineDropsLongLines(t *testing.T) {
	long := strings.Repeat("{", maxLine+10)
	r := bufio.NewReaderSize(strings.NewReader(long+"\n{\"ok\"}\n"), 64<<10)
	if l, err := readLine(r); err != nil || len(l) != 0 {
		t.Fatalf("long line: %d bytes, %v", len(l), err)
	}
	if l, err := readLine(r); err != nil || string(l) != "{\"ok\"}\n" {
		t.Fatalf("next line: %q, %v", l, err)
	}
	if _, err := readLine(r); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}
