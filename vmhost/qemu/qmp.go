package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// QMPError is an error answer from QEMU ({"error": {"class", "desc"}}).
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// errQMPClosed: the connection ended, almost always because QEMU exited.
var errQMPClosed = errors.New("qmp connection closed")

// qmpEvent is an asynchronous QMP event.
type qmpEvent struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// qmpMessage is anything QEMU sends on the socket after the greeting.
type qmpMessage struct {
	ID     string           `json:"id"`
	Return *json.RawMessage `json:"return"`
	Error  *QMPError        `json:"error"`
	Event  string           `json:"event"`
	Data   json.RawMessage  `json:"data"`
}

// qmpClient is a QMP connection: one reader goroutine dispatches answers by
// id and passes events to onEvent (called from that goroutine; it must not
// block). It is safe for concurrent use.
type qmpClient struct {
	conn    *net.UnixConn
	onEvent func(qmpEvent)

	writeMu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan qmpMessage
	err     error // set once the reader stops
	closed  chan struct{}
}

// dialQMP connects to the QMP socket at path, retrying while the socket
// does not exist yet, until ctx ends or abort is closed (the process
// exited). It reads the greeting and enters command mode.
func dialQMP(ctx context.Context, path string, abort <-chan struct{}, onEvent func(qmpEvent)) (*qmpClient, error) {
	var conn *net.UnixConn
	for {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			conn = c
			break
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("connect qmp %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect qmp %s: %w", path, context.Cause(ctx))
		case <-abort:
			return nil, fmt.Errorf("connect qmp %s: %w", path, errQMPClosed)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if onEvent == nil {
		onEvent = func(qmpEvent) {}
	}
	c := &qmpClient{conn: conn, onEvent: onEvent, pending: map[string]chan qmpMessage{}, closed: make(chan struct{})}

	// The greeting arrives first; read it before starting the dispatcher.
	// A ctx deadline bounds the handshake through the socket deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	r := bufio.NewReaderSize(conn, 64<<10)
	line, err := r.ReadBytes('\n')
	if err == nil {
		var greeting struct {
			QMP *json.RawMessage `json:"QMP"`
		}
		if err = json.Unmarshal(line, &greeting); err == nil && greeting.QMP == nil {
			err = fmt.Errorf("unexpected greeting %q", line)
		}
	}
	if !stop() || err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("qmp greeting on %s: %w", path, err)
	}
	go c.readLoop(r)
	if err := c.execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *qmpClient) readLoop(r *bufio.Reader) {
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			break
		}
		var m qmpMessage
		if jerr := json.Unmarshal(line, &m); jerr != nil {
			continue // not ours to fail on; QEMU only sends JSON objects
		}
		if m.Event != "" {
			c.onEvent(qmpEvent{Event: m.Event, Data: m.Data})
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m // buffered
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %w", errQMPClosed, err)
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.closed)
}

// Close closes the connection; pending commands fail with errQMPClosed.
func (c *qmpClient) Close() error {
	err := c.conn.Close()
	<-c.closed
	return err
}

// execute runs cmd with args (nil for none) and decodes its return value
// into result (nil to ignore it).
func (c *qmpClient) execute(ctx context.Context, cmd string, args, result any) error {
	return c.executeFD(ctx, cmd, args, result, -1)
}

// executeFD is execute that passes fd along with the command (SCM_RIGHTS),
// as getfd and add-fd expect. fd < 0 passes none.
func (c *qmpClient) executeFD(ctx context.Context, cmd string, args, result any, fd int) error {
	// Never send a command whose answer nobody will wait for: the caller
	// would not know whether it ran.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, context.Cause(ctx))
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	c.nextID++
	id := strconv.FormatUint(c.nextID, 10)
	ch := make(chan qmpMessage, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{cmd, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		c.forget(id)
		return fmt.Errorf("qmp %s: encode: %w", cmd, err)
	}
	b = append(b, '\n')
	c.writeMu.Lock()
	if fd >= 0 {
		_, _, err = c.conn.WriteMsgUnix(b, syscall.UnixRights(fd), nil)
	} else {
		_, err = c.conn.Write(b)
	}
	c.writeMu.Unlock()
	if err != nil {
		c.forget(id)
		return fmt.Errorf("qmp %s: send: %w", cmd, err)
	}

	select {
	case <-ctx.Done():
		// The answer may still come; the reader drops it.
		c.forget(id)
		return fmt.Errorf("qmp %s: %w", cmd, context.Cause(ctx))
	case m, ok := <-ch:
		if !ok {
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if m.Error != nil {
			m.Error.Command = cmd
			return m.Error
		}
		if result != nil && m.Return != nil {
			if err := json.Unmarshal(*m.Return, result); err != nil {
				return fmt.Errorf("qmp %s: decode answer: %w", cmd, err)
			}
		}
		return nil
	}
}

func (c *qmpClient) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}
