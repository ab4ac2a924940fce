package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/storage"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readAll(t *testing.T, s *Store, key string, off, length int64) []byte {
	t.Helper()
	rc, err := s.Get(ctxT(t), key, off, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

// TestCreateRaceMultipart: the conditional create must also hold for an
// object larger than PartSize, whose racers' uploads overlap for a long time.
// (With minio-go's multi-part path two of them won: the condition was only
// checked when each upload started.)
func TestCreateRaceMultipart(t *testing.T) {
	s := newBucketStore(t).(*Store)
	const n = 6
	const size = 2*MinPartSize + 12345 // three parts
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = make([]byte, size)
		memtest.Fill(bodies[i], uint64(i+1), 0)
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Create(ctxT(t), "manifest", bytes.NewReader(bodies[i]), size)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("multi-part Creates %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, storage.ErrAlreadyExists):
			t.Fatalf("Create %d: %v; want nil or ErrAlreadyExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no multi-part Create succeeded")
	}
	if got := readAll(t, s, "manifest", 0, -1); !bytes.Equal(got, bodies[winner]) {
		t.Fatalf("stored object is not the winner's (%d bytes)", len(got))
	}
}

// TestLargePut: a 64 MiB object in 5 MiB parts, 4 at a time, from a reader
// that is not at offset 0; read back whole and across part boundaries.
func TestLargePut(t *testing.T) {
	srv := miniotest.Shared(t)
	cfg := configFor(srv, srv.NewBucket(t))
	cfg.PartConcurrency = 4
	s := open(t, cfg)

	const size = 64 << 20
	const skip = 3
	buf := make([]byte, skip+size)
	memtest.Fill(buf[skip:], 42, 0.3)
	r := bytes.NewReader(buf)
	if _, err := r.Seek(skip, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	data := buf[skip:]
	if err := s.Put(ctxT(t), "big/memory", r, size); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, "big/memory", 0, -1); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes that differ from the %d put", len(got), size)
	}
	for _, off := range []int64{MinPartSize - 10, 3*MinPartSize - 1, size - 100} {
		if got := readAll(t, s, "big/memory", off, 100); !bytes.Equal(got, data[off:off+100]) {
			t.Errorf("range at %d differs", off)
		}
	}
	// It really went up in parts: an S3 multi-part ETag ends in -<parts>.
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.StatObject(ctxT(t), cfg.Bucket, "big/memory", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("-%d", (size+MinPartSize-1)/MinPartSize); !bytes.HasSuffix([]byte(info.ETag), []byte(want)) {
		t.Errorf("ETag %q does not end in %q: not a %d-part upload", info.ETag, want, (size+MinPartSize-1)/MinPartSize)
	}
}

// TestPrefixIsolation: stores on one bucket with prefixes "a", "ab" and none
// see only their own keys, including prefixes that are string prefixes of
// each other.
func TestPrefixIsolation(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := srv.NewBucket(t)
	stores := map[string]*Store{}
	for _, p := range []string{"a", "ab/", ""} {
		cfg := configFor(srv, bucket)
		cfg.Prefix = p
		stores[p] = open(t, cfg)
	}
	ctx := ctxT(t)
	for p, s := range stores {
		body := []byte("from " + p)
		if err := s.Put(ctx, "k", bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	for p, s := range stores {
		if got := string(readAll(t, s, "k", 0, -1)); got != "from "+p {
			t.Errorf("prefix %q: Get(k) = %q", p, got)
		}
		var keys []string
		if err := s.List(ctx, "", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		want := []string{"k"}
		if p == "" {
			want = []string{"a/k", "ab/k", "k"} // the root store sees everything
		}
		if !slices.Equal(keys, want) {
			t.Errorf("prefix %q: List = %q, want %q", p, keys, want)
		}
	}
	if err := stores["a"].Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := stores["ab/"].Stat(ctx, "k"); err != nil {
		t.Errorf("deleting a/k touched ab/k: %v", err)
	}
}

func TestOpenBucket(t *testing.T) {
	srv := miniotest.Shared(t)
	cfg := configFor(srv, miniotest.BucketName(t.Name()))
	ctx := ctxT(t)
	if _, err := Open(ctx, cfg); err == nil {
		t.Fatal("Open of a missing bucket without CreateBucket succeeded")
	}
	cfg.CreateBucket = true
	s := open(t, cfg)
	open(t, cfg) // the bucket exists now: still fine
	if err := s.Put(ctx, "x", bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}

	bad := cfg
	bad.SecretKey = "wrong-secret"
	_, err := Open(ctx, bad)
	if err == nil {
		t.Fatal("Open with a wrong secret succeeded")
	}
	if bytes.Contains([]byte(err.Error()), []byte("wrong-secret")) {
		t.Errorf("error leaks the secret: %v", err)
	}
}

// TestOutage: with the server down, operations fail promptly with an
// error that is not a sentinel (so storage/retry may retry it), and work
// again after the server comes back with its data.
func TestOutage(t *testing.T) {
	srv := miniotest.Start(t) // its own server: the shared one must stay up
	cfg := configFor(srv, srv.NewBucket(t))
	s := open(t, cfg)
	ctx := ctxT(t)
	if err := s.Put(ctx, "k", bytes.NewReader([]byte("v")), 1); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"get":  func() error { _, err := s.Get(ctx, "k", 0, -1); return err },
		"stat": func() error { _, err := s.Stat(ctx, "k"); return err },
		"put":  func() error { return s.Put(ctx, "k2", bytes.NewReader([]byte("v")), 1) },
		"list": func() error { return s.List(ctx, "", func(storage.ObjectInfo) error { return nil }) },
	} {
		err := op()
		if err == nil {
			t.Errorf("%s with the server down succeeded", name)
		}
		for _, sentinel := range []error{storage.ErrNotFound, storage.ErrAlreadyExists, context.Canceled} {
			if errors.Is(err, sentinel) {
				t.Errorf("%s with the server down = %v, which is %v", name, err, sentinel)
			}
		}
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := string(readAll(t, s, "k", 0, -1)); got != "v" {
		t.Fatalf("after restart Get = %q", got)
	}
}

func TestTranslateError(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	other := errors.New("connection refused")
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want error
	}{
		{"nil", context.Background(), nil, nil},
		{"no such key", context.Background(), minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, storage.ErrNotFound},
		{"head 404", context.Background(), minio.ErrorResponse{Code: "NotFound", StatusCode: 404}, storage.ErrNotFound},
		{"precondition", context.Background(), minio.ErrorResponse{Code: "PreconditionFailed", StatusCode: 412}, storage.ErrAlreadyExists},
		{"412 without code", context.Background(), minio.ErrorResponse{StatusCode: 412}, storage.ErrAlreadyExists},
		{"no such bucket", context.Background(), minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, nil},
		{"ctx kept", context.Background(), fmt.Errorf("op: %w", context.DeadlineExceeded), context.DeadlineExceeded},
		{"cancelled ctx shows", cancelled, other, context.Canceled},
		{"other", context.Background(), other, other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := translateError(tc.ctx, tc.err)
			switch {
			case tc.err == nil:
				if got != nil {
					t.Fatalf("= %v, want nil", got)
				}
			case tc.want == nil:
				for _, s := range []error{storage.ErrNotFound, storage.ErrAlreadyExists} {
					if errors.Is(got, s) {
						t.Fatalf("= %v, must not be %v", got, s)
					}
				}
			case !errors.Is(got, tc.want):
				t.Fatalf("= %v, want %v", got, tc.want)
			}
		})
	}
}

type untouchable struct{ t *testing.T }

func (u untouchable) Read([]byte) (int, error) {
	u.t.Error("Read called")
	return 0, io.EOF
}

func (u untouchable) Seek(int64, int) (int64, error) { return 0, nil }

// TestCreateTooLarge: a Create that cannot be one PUT fails before sending.
func TestCreateTooLarge(t *testing.T) {
	s := newBucketStore(t).(*Store)
	err := s.Create(ctxT(t), "huge", untouchable{t}, MaxCreateSize+1)
	if err == nil || errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("Create of %d bytes = %v, want a size error", int64(MaxCreateSize+1), err)
	}
	if err := s.Put(ctxT(t), "neg", untouchable{t}, -1); err == nil {
		t.Fatal("Put with size -1 succeeded")
	}
}

// payloadRecorder records the X-Amz-Content-Sha256 header of every PUT by
// object path.
type payloadRecorder struct {
	mu   sync.Mutex
	seen map[string]string
}

func (p *payloadRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut {
		p.mu.Lock()
		p.seen[req.URL.Path] = req.Header.Get("X-Amz-Content-Sha256")
		p.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestUnsignedPayloadPrefixes: keys under an unsigned prefix go up as
// UNSIGNED-PAYLOAD, every other key keeps its signed body, whether by Put
// or Create, single PUT or multi-part; all read back intact.
func TestUnsignedPayloadPrefixes(t *testing.T) {
	srv := miniotest.Shared(t)
	cfg := configFor(srv, srv.NewBucket(t))
	cfg.Prefix = "tenant"
	cfg.UnsignedPayloadPrefixes = []string{"chunks/"}
	rec := &payloadRecorder{seen: make(map[string]string)}
	cfg.transport = rec
	s := open(t, cfg)

	small := make([]byte, 100<<10)
	memtest.Fill(small, 1, 0.5)
	big := make([]byte, 2*MinPartSize+1) // multi-part through Put
	memtest.Fill(big, 2, 0.5)
	tests := []struct {
		key      string
		create   bool
		body     []byte
		unsigned bool
	}{
		{"chunks/ab/chunk", true, small, true},
		{"chunks/big", false, big, true},
		{"snapshots/x/manifest.json", true, small, false},
		{"locks/upload-x.json", false, small, false},
		{"chunksnot/y", false, small, false},
	}
	for _, tc := range tests {
		var err error
		if tc.create {
			err = s.Create(ctxT(t), tc.key, bytes.NewReader(tc.body), int64(len(tc.body)))
		} else {
			err = s.Put(ctxT(t), tc.key, bytes.NewReader(tc.body), int64(len(tc.body)))
		}
		if err != nil {
			t.Fatalf("write %s: %v", tc.key, err)
		}
		if got := readAll(t, s, tc.key, 0, -1); !bytes.Equal(got, tc.body) {
			t.Fatalf("%s read back differs", tc.key)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, tc := range tests {
		var headers []string
		for path, h := range rec.seen {
			if strings.HasSuffix(path, "/tenant/"+tc.key) {
				headers = append(headers, h)
			}
		}
		if len(headers) == 0 {
			t.Errorf("%s: no PUT seen", tc.key)
		}
		for _, h := range headers {
			if isUnsigned := h == "UNSIGNED-PAYLOAD"; isUnsigned != tc.unsigned || h == "" {
				t.Errorf("%s: X-Amz-Content-Sha256 %q, want unsigned=%v", tc.key, h, tc.unsigned)
			}
		}
	}
}
