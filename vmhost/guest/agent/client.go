package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// ErrDisconnected: the connection to the agent's serial port ended before
// the answer came (the VM stopped, went on standby, or was restored
// elsewhere). The request may or may not have run. The next call
// reconnects.
var ErrDisconnected = errors.New("agent disconnected")

// DefaultTimeout bounds a call whose ctx has no deadline (exec adds its own
// timeout to it; file transfers get FileTimeout).
const DefaultTimeout = 15 * time.Second

// FileTimeout bounds ReadFile and WriteFile when ctx has no deadline: a
// MaxFileSize transfer takes seconds on an emulated serial line.
const FileTimeout = 2 * time.Minute

// Client talks to a guest agent through the unix socket behind the guest's
// serial port. It is safe for concurrent use. A broken connection is
// re-established by the next call, on the same path or the one given to
// Reconnect (a restored VM has a new hypervisor process and maybe a new
// socket path; the agent inside never noticed).
type Client struct {
	mu     sync.Mutex
	path   string
	conn   *clientConn
	nextID uint64
	closed bool
}

type clientConn struct {
	c       net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[uint64]chan response
	dead    chan struct{}
	err     error
}

// Dial connects to the agent at sockPath and waits until it answers a ping,
// retrying while the socket is missing or the guest is still booting, until
// ctx ends. This is how a caller waits for a guest to be ready.
func Dial(ctx context.Context, sockPath string) (*Client, error) {
	c := &Client{path: sockPath}
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Reconnect drops the current connection and points the client at
// sockPath, then waits like Dial for the agent to answer.
func (c *Client) Reconnect(ctx context.Context, sockPath string) error {
	c.mu.Lock()
	c.path = sockPath
	old := c.conn
	c.conn = nil
	c.mu.Unlock()
	if old != nil {
		old.c.Close()
	}
	return c.WaitReady(ctx)
}

// WaitReady pings until the agent answers or ctx ends. Each ping waits up to
// a second: pings sent while the guest boots are lost or answered late, and
// late answers are ignored.
func (c *Client) WaitReady(ctx context.Context) error {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Ping(attempt)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if ctx.Err() != nil {
			return fmt.Errorf("guest agent at %s not ready: %w (last attempt: %v)", c.path, context.Cause(ctx), last)
		}
		if errors.Is(err, errClientClosed) {
			return err
		}
		// A refused or missing socket fails at once; do not spin on it.
		if !errors.Is(err, context.DeadlineExceeded) {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

var errClientClosed = errors.New("agent client closed")

// Close closes the connection. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		return conn.c.Close()
	}
	return nil
}

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) (Pong, error) {
	var p Pong
	err := c.call(ctx, OpPing, nil, &p)
	return p, err
}

// State returns the guest's in-memory state.
func (c *Client) State(ctx context.Context) (State, error) {
	var s State
	err := c.call(ctx, OpState, nil, &s)
	return s, err
}

// Exec runs a program in the guest. A program that ran and failed is not an
// error: look at ExitCode and TimedOut.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	t := req.Timeout
	if t <= 0 {
		t = DefaultExecTimeout
	}
	ctx, cancel := withDefaultTimeout(ctx, DefaultTimeout+time.Duration(t*float64(time.Second)))
	defer cancel()
	var r ExecResult
	err := c.call(ctx, OpExec, req, &r)
	return r, err
}

// ReadFile returns a guest file's content (at most MaxFileSize bytes).
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := withDefaultTimeout(ctx, FileTimeout)
	defer cancel()
	var r FileResult
	err := c.call(ctx, OpReadFile, FileRequest{Path: path}, &r)
	return r.Data, err
}

// WriteFile replaces a guest file atomically; mode 0 means 0644.
func (c *Client) WriteFile(ctx context.Context, path string, data []byte, mode uint32) error {
	if len(data) > MaxFileSize {
		return &Error{CodeTooLarge, fmt.Sprintf("%d bytes, the limit is %d", len(data), MaxFileSize)}
	}
	ctx, cancel := withDefaultTimeout(ctx, FileTimeout)
	defer cancel()
	return c.call(ctx, OpWriteFile, FileRequest{Path: path, Data: data, Mode: mode}, nil)
}

// withDefaultTimeout gives ctx a deadline d from now if it has none.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

func (c *Client) call(ctx context.Context, op string, args, result any) error {
	ctx, cancel := withDefaultTimeout(ctx, DefaultTimeout)
	defer cancel()
	req := request{Type: typeRequest, Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("agent %s: encode: %w", op, err)
		}
		req.Args = b
	}
	conn, id, err := c.connect(ctx)
	if err != nil {
		return fmt.Errorf("agent %s: %w", op, err)
	}
	req.ID = id
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("agent %s: encode: %w", op, err)
	}
	ch := make(chan response, 1)
	conn.mu.Lock()
	if conn.err != nil {
		conn.mu.Unlock()
		return fmt.Errorf("agent %s: %w", op, conn.err)
	}
	conn.pending[id] = ch
	conn.mu.Unlock()
	defer func() {
		conn.mu.Lock()
		delete(conn.pending, id)
		conn.mu.Unlock()
	}()

	conn.wmu.Lock()
	conn.c.SetWriteDeadline(deadline(ctx))
	_, err = conn.c.Write(append(line, '\n'))
	conn.wmu.Unlock()
	if err != nil {
		c.drop(conn, err)
		return fmt.Errorf("agent %s: %w: %w", op, ErrDisconnected, err)
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("agent %s: %w", op, context.Cause(ctx))
	case <-conn.dead:
		return fmt.Errorf("agent %s: %w", op, conn.err)
	case resp := <-ch:
		if resp.Error != nil {
			return fmt.Errorf("agent %s: %w", op, resp.Error)
		}
		if result != nil {
			if err := json.Unmarshal(resp.Result, result); err != nil {
				return fmt.Errorf("agent %s: decode answer: %w", op, err)
			}
		}
		return nil
	}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// connect returns the live connection, dialling when there is none, and a
// fresh request id.
func (c *Client) connect(ctx context.Context) (*clientConn, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, 0, errClientClosed
	}
	c.nextID++
	if c.conn != nil {
		return c.conn, c.nextID, nil
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, 0, fmt.Errorf("%w: %w", ErrDisconnected, err)
		}
		return nil, 0, err
	}
	conn := &clientConn{c: nc, pending: map[uint64]chan response{}, dead: make(chan struct{})}
	// A newline ends whatever partial line the agent may hold from a
	// connection that broke mid-request (or from before a snapshot).
	nc.SetWriteDeadline(deadline(ctx))
	if _, err := nc.Write([]byte("\n")); err != nil {
		nc.Close()
		return nil, 0, fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	c.conn = conn
	go c.readLoop(conn)
	return conn, c.nextID, nil
}

func (c *Client) drop(conn *clientConn, err error) {
	conn.c.Close()
	conn.mu.Lock()
	if conn.err == nil {
		conn.err = fmt.Errorf("%w: %w", ErrDisconnected, err)
		close(conn.dead)
	}
	conn.mu.Unlock()
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	c.mu.Unlock()
}

func (c *Client) readLoop(conn *clientConn) {
	r := bufio.NewReaderSize(conn.c, 64<<10)
	for {
		line, err := readLine(r)
		if err != nil {
			c.drop(conn, err)
			return
		}
		line = bytes.TrimSpace(line)
		// Skip anything that is not one of our responses: console noise,
		// our own requests echoed by a tty still in cooked mode, answers to
		// requests we gave up on.
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var resp response
		if json.Unmarshal(line, &resp) != nil || resp.Type != typeResponse {
			continue
		}
		conn.mu.Lock()
		ch := conn.pending[resp.ID]
		delete(conn.pending, resp.ID)
		conn.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}
