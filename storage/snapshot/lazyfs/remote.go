package lazyfs

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// The chunk protocol between a lazy server process (Child) and the
// daemon that owns the store (ServeChunks), over a unix socket: one
// request per connection.
//
//	request:  op (1 byte), the chunk id (32 bytes); op fill adds the
//	          backing file's path (uint16 BE length, bytes) and its
//	          offsets (uint16 BE count, uint64 BE each)
//	response: status (1 byte: 0 ok, 1 error), from-cache flag (1 byte),
//	          stored size (uint32 BE), length (uint32 BE), then: op get,
//	          length bytes: the raw chunk (ok); op fill, nothing (ok:
//	          length is the raw size, the chunk is in the file); or an
//	          error message of length bytes (error).
//
// A connection the daemon closes without a response (it is shutting
// down) is not an answer: the client asks again.
const (
	opGet     = 1
	opFill    = 2
	statusOK  = 0
	statusErr = 1
	// maxReply bounds a response's payload (a chunk is at most 64 MiB).
	maxReply = 64 << 20
	// sockBuffer is the socket buffer asked for on both ends (the kernel
	// caps it at net.core.[rw]mem_max).
	sockBuffer = 4 << 20
)

// ChunkServer serves chunks fetched through a Fetcher to lazy server
// processes (SocketFetcher).
type ChunkServer struct {
	ln     net.Listener
	f      Fetcher
	allow  func(path string) bool
	filled FilledFunc
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

// FilledFunc is told of every chunk a ChunkServer is to write into an
// allowed backing file: the file, the offsets, the chunk's id and its raw
// bytes, which the Fetcher verified against id. It runs beside the write
// and returns before the answer, so it has been told of every fill a
// client was told succeeded (and possibly of one whose write failed: the
// bytes still have that id). It must not keep or change raw.
type FilledFunc func(path string, offs []int64, id chunk.ID, raw []byte)

// ServeChunks serves f's chunks on ln until Close. It fills the backing
// files allowFill accepts (nil: none; a fill request then fails) and
// tells filled (nil: nobody) of each fill.
func ServeChunks(ln net.Listener, f Fetcher, log *slog.Logger, allowFill func(path string) bool, filled FilledFunc) *ChunkServer {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &ChunkServer{ln: ln, f: f, allow: allowFill, filled: filled, log: log.With("component", "lazyfs-chunks"), ctx: ctx, cancel: cancel, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Close stops serving: the listener closes and requests in flight end
// without an answer (their clients ask again, of a successor).
func (s *ChunkServer) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *ChunkServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("chunk socket accept", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *ChunkServer) serve(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	var req [33]byte
	if _, err := io.ReadFull(r, req[:]); err != nil {
		return
	}
	var id chunk.ID
	copy(id[:], req[1:])
	var path string
	var offs []int64
	if req[0] == opFill {
		var err error
		if path, offs, err = readFill(r); err != nil {
			return
		}
	}
	c.SetReadDeadline(time.Time{})
	if uc, ok := c.(*net.UnixConn); ok && req[0] == opGet {
		uc.SetWriteBuffer(sockBuffer)
	}
	var payload []byte
	var hdr [10]byte
	f, err := s.f.FetchChunk(s.ctx, id)
	if s.ctx.Err() != nil {
		return // shutting down: no answer, the client asks again
	}
	if err == nil {
		switch req[0] {
		case opGet:
			payload = f.Raw
			binary.BigEndian.PutUint32(hdr[6:], uint32(len(payload)))
		case opFill:
			err = s.fillTold(path, offs, id, f.Raw)
			binary.BigEndian.PutUint32(hdr[6:], uint32(len(f.Raw)))
		default:
			err = fmt.Errorf("unknown op %d", req[0])
		}
	}
	if err != nil {
		hdr[0] = statusErr
		payload = []byte(err.Error())
		binary.BigEndian.PutUint32(hdr[6:], uint32(len(payload)))
		s.log.Warn("chunk for a lazy server failed", "chunk", id.String(), "err", err)
	} else if f.FromCache {
		hdr[1] = 1
	}
	binary.BigEndian.PutUint32(hdr[2:], uint32(f.Stored))
	if _, err := c.Write(hdr[:]); err != nil || len(payload) == 0 {
		return
	}
	c.Write(payload)
}

// fillTold fills, and tells s.filled of the chunk while the write runs
// (what it computes, a keyed digest, costs about as much as the write).
func (s *ChunkServer) fillTold(path string, offs []int64, id chunk.ID, raw []byte) error {
	if s.filled == nil || s.allow == nil || !s.allow(path) {
		return s.fill(path, offs, raw)
	}
	told := make(chan struct{})
	go func() {
		defer close(told)
		s.filled(path, offs, id, raw)
	}()
	err := s.fill(path, offs, raw)
	<-told
	return err
}

// fill writes raw at each of offs in the file at path, sparse.
func (s *ChunkServer) fill(path string, offs []int64, raw []byte) error {
	if s.allow == nil || !s.allow(path) {
		return fmt.Errorf("fill %s: not a lazy backing file of this host", path)
	}
	// O_NOFOLLOW: a symlink named like a backing file is not one (it
	// would have this daemon write wherever it points).
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	// The server sized the file: a chunk lies wholly inside it (offsets
	// come off the socket; a bad one must not grow the file or wrap).
	for _, off := range offs {
		if off < 0 || off > st.Size()-int64(len(raw)) {
			return fmt.Errorf("fill %s: chunk of %d bytes at offset %d outside the file's %d bytes", path, len(raw), off, st.Size())
		}
	}
	for _, off := range offs {
		if err := chunk.WriteSparse(f, raw, off); err != nil {
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
	return nil
}

// readFill reads a fill request's path and offsets.
func readFill(r io.Reader) (string, []int64, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", nil, err
	}
	p := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, p); err != nil {
		return "", nil, err
	}
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", nil, err
	}
	offs := make([]int64, binary.BigEndian.Uint16(n[:]))
	for i := range offs {
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", nil, err
		}
		offs[i] = int64(binary.BigEndian.Uint64(b[:]))
	}
	return string(p), offs, nil
}

// SocketFetcher fetches chunks from a ChunkServer on a unix socket. While
// the server is away (its daemon restarting) it asks again, with a
// backoff of up to a second, for up to Patience: a read waiting for the
// chunk just waits longer. An error the server answers is final.
type SocketFetcher struct {
	Path     string
	Patience time.Duration // default 10 minutes
	Log      *slog.Logger
}

// errNoAnswer: the server did not answer (not listening, went away).
var errNoAnswer = errors.New("no answer from the chunk server")

// FetchChunk implements Fetcher. The server verified the chunk against
// id (a Repo's FetchChunk does); it is not hashed again here.
func (f SocketFetcher) FetchChunk(ctx context.Context, id chunk.ID) (snapshot.FetchedChunk, error) {
	var got snapshot.FetchedChunk
	err := f.retry(ctx, id, func() error {
		var err error
		got, err = f.once(ctx, id)
		return err
	})
	return got, err
}

// FillChunk implements Filler: the server writes the chunk into backing.
func (f SocketFetcher) FillChunk(ctx context.Context, id chunk.ID, backing string, offsets []int64) (Filled, error) {
	var got Filled
	err := f.retry(ctx, id, func() error {
		var err error
		got, err = f.fillOnce(ctx, id, backing, offsets)
		return err
	})
	return got, err
}

// retry runs once until it answers (an error other than errNoAnswer
// included), for up to Patience.
func (f SocketFetcher) retry(ctx context.Context, id chunk.ID, once func() error) error {
	patience := f.Patience
	if patience <= 0 {
		patience = 10 * time.Minute
	}
	deadline := time.Now().Add(patience)
	wait := 20 * time.Millisecond
	logged := false
	for {
		err := once()
		if !errors.Is(err, errNoAnswer) {
			if logged && err == nil && f.Log != nil {
				f.Log.Info("chunk server answers again", "chunk", id.String())
			}
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chunk %s: gave up after %s: %w", id, patience, err)
		}
		if !logged && f.Log != nil {
			f.Log.Warn("chunk server away; waiting for it", "chunk", id.String(), "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// once asks the server for the chunk's bytes once; errNoAnswer wraps
// whatever kept it from answering.
func (f SocketFetcher) once(ctx context.Context, id chunk.ID) (snapshot.FetchedChunk, error) {
	req := append([]byte{opGet}, id[:]...)
	hdr, payload, err := f.ask(ctx, id, req, true)
	if err != nil {
		return snapshot.FetchedChunk{}, err
	}
	return snapshot.FetchedChunk{Raw: payload, FromCache: hdr[1] == 1, Stored: int(binary.BigEndian.Uint32(hdr[2:]))}, nil
}

// fillOnce asks the server once to write the chunk into backing.
func (f SocketFetcher) fillOnce(ctx context.Context, id chunk.ID, backing string, offsets []int64) (Filled, error) {
	if len(backing) > 0xffff || len(offsets) > 0xffff {
		return Filled{}, fmt.Errorf("chunk %s: fill request too large", id)
	}
	req := append([]byte{opFill}, id[:]...)
	req = binary.BigEndian.AppendUint16(req, uint16(len(backing)))
	req = append(req, backing...)
	req = binary.BigEndian.AppendUint16(req, uint16(len(offsets)))
	for _, o := range offsets {
		req = binary.BigEndian.AppendUint64(req, uint64(o))
	}
	hdr, _, err := f.ask(ctx, id, req, false)
	if err != nil {
		return Filled{}, err
	}
	return Filled{Raw: int(binary.BigEndian.Uint32(hdr[6:])), Stored: int(binary.BigEndian.Uint32(hdr[2:])), FromCache: hdr[1] == 1}, nil
}

// ask sends req and reads the answer: its header and, if withPayload or
// the answer is an error, its payload.
func (f SocketFetcher) ask(ctx context.Context, id chunk.ID, req []byte, withPayload bool) (hdr [10]byte, payload []byte, err error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", f.Path)
	if err != nil {
		return hdr, nil, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	defer c.Close()
	if uc, ok := c.(*net.UnixConn); ok && withPayload {
		uc.SetReadBuffer(sockBuffer) // a chunk in few reads
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	noAnswer := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	if _, err := c.Write(req); err != nil {
		return hdr, nil, noAnswer(err)
	}
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return hdr, nil, noAnswer(err)
	}
	failed := hdr[0] != statusOK
	if !withPayload && !failed {
		return hdr, nil, nil
	}
	n := binary.BigEndian.Uint32(hdr[6:])
	if n > maxReply {
		return hdr, nil, fmt.Errorf("chunk %s: reply of %d bytes", id, n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c, payload); err != nil {
		return hdr, nil, noAnswer(err)
	}
	if failed {
		return hdr, nil, fmt.Errorf("chunk %s: the daemon failed to fetch it: %s", id, payload)
	}
	return hdr, payload, nil
}
