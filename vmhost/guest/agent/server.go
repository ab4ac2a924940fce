package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Version is the agent protocol version reported by ping.
const Version = "1"

// CounterInterval is how often State.Counter advances.
const CounterInterval = 100 * time.Millisecond

// Agent answers requests inside the guest. Its state (boot id, counter)
// lives only in its memory.
type Agent struct {
	bootID  string
	counter atomic.Uint64
	// uptime reads the kernel's uptime; replaceable in tests.
	uptime func() (float64, error)
}

// New creates an agent with a fresh boot id and starts its counter, which
// runs until ctx ends.
func New(ctx context.Context) *Agent {
	var b [16]byte
	rand.Read(b[:])
	a := &Agent{bootID: hex.EncodeToString(b[:]), uptime: procUptime}
	go func() {
		t := time.NewTicker(CounterInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.counter.Add(1)
			}
		}
	}()
	return a
}

// Serve reads requests from rw, one JSON object a line, and writes one
// response line per request. Requests run concurrently (a long exec does
// not hold up a ping); writes are serialised. Lines that are not requests
// are ignored: on a serial line, noise is normal. Serve returns when ctx
// ends or reading fails (io.EOF included).
func (a *Agent) Serve(ctx context.Context, rw io.ReadWriter) error {
	var wmu sync.Mutex
	write := func(resp response) {
		resp.Type = typeResponse
		b, err := json.Marshal(resp)
		if err != nil {
			b, _ = json.Marshal(response{Type: typeResponse, ID: resp.ID, Error: &Error{CodeFailed, err.Error()}})
		}
		wmu.Lock()
		rw.Write(append(b, '\n'))
		wmu.Unlock()
	}
	r := bufio.NewReaderSize(rw, 64<<10)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var req request
		if json.Unmarshal(line, &req) != nil || req.Type != typeRequest {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			result, err := a.handle(ctx, req)
			resp := response{ID: req.ID}
			if err != nil {
				var ae *Error
				if !errors.As(err, &ae) {
					ae = &Error{CodeFailed, err.Error()}
				}
				resp.Error = ae
			} else if resp.Result, err = json.Marshal(result); err != nil {
				resp.Error = &Error{CodeFailed, err.Error()}
			}
			write(resp)
		}()
	}
}

// readLine reads one line. A line longer than maxLine comes back empty:
// it is read to its end and dropped, so memory stays bounded and no piece
// of it is mistaken for a line of its own.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	dropping := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !dropping && len(buf)+len(chunk) <= maxLine {
			buf = append(buf, chunk...)
		} else {
			dropping, buf = true, nil
		}
		if err == nil {
			return buf, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return buf, err
		}
	}
}

func invalid(format string, args ...any) error {
	return &Error{CodeInvalidRequest, fmt.Sprintf(format, args...)}
}

func (a *Agent) handle(ctx context.Context, req request) (any, error) {
	switch req.Op {
	case OpPing:
		return Pong{Version: Version}, nil
	case OpState:
		up, err := a.uptime()
		if err != nil {
			return nil, err
		}
		return State{BootID: a.bootID, Counter: a.counter.Load(), Uptime: up}, nil
	case OpExec:
		var er ExecRequest
		if err := json.Unmarshal(req.Args, &er); err != nil {
			return nil, invalid("exec args: %v", err)
		}
		return a.exec(ctx, er)
	case OpReadFile, OpWriteFile:
		var fr FileRequest
		if err := json.Unmarshal(req.Args, &fr); err != nil {
			return nil, invalid("%s args: %v", req.Op, err)
		}
		if !filepath.IsAbs(fr.Path) {
			return nil, invalid("path %q is not absolute", fr.Path)
		}
		if req.Op == OpReadFile {
			return readFile(fr.Path)
		}
		return struct{}{}, writeFile(fr)
	default:
		return nil, invalid("unknown op %q", req.Op)
	}
}

func (a *Agent) exec(ctx context.Context, er ExecRequest) (ExecResult, error) {
	if len(er.Argv) == 0 || er.Argv[0] == "" {
		return ExecResult{}, invalid("exec: argv is empty")
	}
	timeout := time.Duration(er.Timeout * float64(time.Second))
	if er.Timeout <= 0 {
		timeout = DefaultExecTimeout * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, er.Argv[0], er.Argv[1:]...)
	cmd.Stdin = bytes.NewReader(er.Stdin)
	stdout, stderr := &capped{max: MaxOutput}, &capped{max: MaxOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second // a grandchild holding the pipes must not hang us
	err := cmd.Run()
	res := ExecResult{
		ExitCode:  -1,
		Stdout:    stdout.buf.Bytes(),
		Stderr:    stderr.buf.Bytes(),
		TimedOut:  errors.Is(ctx.Err(), context.DeadlineExceeded),
		Truncated: stdout.dropped || stderr.dropped,
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		res.ExitCode = 0
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case res.TimedOut:
	default:
		return res, &Error{CodeFailed, "exec " + er.Argv[0] + ": " + err.Error()}
	}
	return res, nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf     bytes.Buffer
	max     int
	dropped bool
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - c.buf.Len()
	if room < len(p) {
		c.dropped = true
		if room > 0 {
			c.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return c.buf.Write(p)
}

func readFile(path string) (FileResult, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return FileResult{}, &Error{CodeNotFound, err.Error()}
	}
	if err != nil {
		return FileResult{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return FileResult{}, err
	}
	if len(b) > MaxFileSize {
		return FileResult{}, &Error{CodeTooLarge, fmt.Sprintf("%s is larger than %d bytes", path, MaxFileSize)}
	}
	return FileResult{Data: b}, nil
}

// writeFile replaces the file atomically (temporary file and rename), so a
// reader in the guest never sees half of it.
func writeFile(fr FileRequest) error {
	if len(fr.Data) > MaxFileSize {
		return &Error{CodeTooLarge, fmt.Sprintf("%d bytes, the limit is %d", len(fr.Data), MaxFileSize)}
	}
	mode := fs.FileMode(fr.Mode & 0o7777)
	if mode == 0 {
		mode = 0o644
	}
	tmp, err := os.CreateTemp(filepath.Dir(fr.Path), "."+filepath.Base(fr.Path)+".tmp-*")
	if errors.Is(err, fs.ErrNotExist) {
		return &Error{CodeNotFound, err.Error()}
	}
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(fr.Data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), fr.Path)
}

func procUptime() (float64, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("parse /proc/uptime %q", b)
	}
	return strconv.ParseFloat(f[0], 64)
}
