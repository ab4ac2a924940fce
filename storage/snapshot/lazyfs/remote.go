package lazyfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// The chunk protocol between a lazy server process (Child) and the
// daemon that owns the store (ServeChunks), over a unix socket: one
// request per connection.
//
//	request:  the chunk id (32 bytes)
//	response: status (1 byte: 0 ok, 1 error), from-cache flag (1 byte),
//	          stored size (uint32 BE), length (uint32 BE), then length
//	          bytes: the raw chunk (ok) or an error message (error).
//
// A connection the daemon closes without a response (it is shutting
// down) is not an answer: the client asks again.
const (
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
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

// ServeChunks serves f's chunks on ln until Close.
func ServeChunks(ln net.Listener, f Fetcher, log *slog.Logger) *ChunkServer {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &ChunkServer{ln: ln, f: f, log: log.With("component", "lazyfs-chunks"), ctx: ctx, cancel: cancel, conns: map[net.Conn]bool{}}
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
	var id chunk.ID
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, id[:]); err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	if uc, ok := c.(*net.UnixConn); ok {
		uc.SetWriteBuffer(sockBuffer)
	}
	f, err := s.f.FetchChunk(s.ctx, id)
	if s.ctx.Err() != nil {
		return // shutting down: no answer, the client asks again
	}
	var hdr [10]byte
	payload := f.Raw
	if err != nil {
		hdr[0] = statusErr
		payload = []byte(err.Error())
		s.log.Warn("chunk for a lazy server failed", "chunk", id.String(), "err", err)
	} else if f.FromCache {
		hdr[1] = 1
	}
	binary.BigEndian.PutUint32(hdr[2:], uint32(f.Stored))
	binary.BigEndian.PutUint32(hdr[6:], uint32(len(payload)))
	if _, err := c.Write(hdr[:]); err != nil {
		return
	}
	c.Write(payload)
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
	patience := f.Patience
	if patience <= 0 {
		patience = 10 * time.Minute
	}
	deadline := time.Now().Add(patience)
	wait := 20 * time.Millisecond
	logged := false
	for {
		got, err := f.once(ctx, id)
		if !errors.Is(err, errNoAnswer) {
			if logged && err == nil && f.Log != nil {
				f.Log.Info("chunk server answers again", "chunk", id.String())
			}
			return got, err
		}
		if time.Now().After(deadline) {
			return snapshot.FetchedChunk{}, fmt.Errorf("chunk %s: gave up after %s: %w", id, patience, err)
		}
		if !logged && f.Log != nil {
			f.Log.Warn("chunk server away; waiting for it", "chunk", id.String(), "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return snapshot.FetchedChunk{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// once asks the server once; errNoAnswer wraps whatever kept it from
// answering.
func (f SocketFetcher) once(ctx context.Context, id chunk.ID) (snapshot.FetchedChunk, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", f.Path)
	if err != nil {
		return snapshot.FetchedChunk{}, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	defer c.Close()
	if uc, ok := c.(*net.UnixConn); ok {
		uc.SetReadBuffer(sockBuffer) // a chunk in few reads
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(id[:]); err != nil {
		return snapshot.FetchedChunk{}, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		if ctx.Err() != nil {
			return snapshot.FetchedChunk{}, ctx.Err()
		}
		return snapshot.FetchedChunk{}, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	n := binary.BigEndian.Uint32(hdr[6:])
	if n > maxReply {
		return snapshot.FetchedChunk{}, fmt.Errorf("chunk %s: reply of %d bytes", id, n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c, payload); err != nil {
		if ctx.Err() != nil {
			return snapshot.FetchedChunk{}, ctx.Err()
		}
		return snapshot.FetchedChunk{}, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	if hdr[0] != statusOK {
		return snapshot.FetchedChunk{}, fmt.Errorf("chunk %s: the daemon failed to fetch it: %s", id, payload)
	}
	return snapshot.FetchedChunk{Raw: payload, FromCache: hdr[1] == 1, Stored: int(binary.BigEndian.Uint32(hdr[2:]))}, nil
}
