package miniotest

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// TestStartStopRestart proves the harness starts a real server, that an
// object survives Stop/Restart on the same endpoint (the outage simulation
// later tests rely on), and that a stopped server really refuses requests.
func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	bucket := s.NewBucket(t)
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("parked vm")
	if _, err := c.PutObject(ctx, bucket, "a/b", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	endpoint := s.Endpoint
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	_, err = c.StatObject(short, bucket, "a/b", minio.StatObjectOptions{})
	cancelShort()
	if err == nil {
		t.Fatal("stat succeeded against a stopped server")
	}

	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Endpoint != endpoint {
		t.Fatalf("endpoint changed across restart: %s -> %s", endpoint, s.Endpoint)
	}
	obj, err := c.GetObject(ctx, bucket, "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("after restart got %q, want %q", got, want)
	}
	if s.Log() == "" {
		t.Error("empty server log")
	}
}

func TestBucketName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	seen := map[string]bool{}
	for _, hint := range []string{"", "TestX", "Test/Sub_test#01", string(bytes.Repeat([]byte("Long/Name"), 20)), "---"} {
		n := BucketName(hint)
		if !valid.MatchString(n) {
			t.Errorf("BucketName(%q) = %q, not a valid bucket name", hint, n)
		}
		if seen[n] {
			t.Errorf("BucketName(%q) = %q repeated", hint, n)
		}
		seen[n] = true
	}
}

func TestStartProcessBadBinary(t *testing.T) {
	_, err := StartProcess(context.Background(), "/nonexistent/minio", t.TempDir())
	if err == nil {
		t.Fatal("StartProcess with a missing binary succeeded")
	}
}
