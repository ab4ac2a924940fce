// Package miniotest runs a real MinIO server as a separate process on
// 127.0.0.1, for tests and for the benchmark tool.
//
// Start is the testing entry: it starts a server with a fresh temporary data
// directory, free ports for the S3 API and the console, and random root
// credentials, waits until the server answers its health check, and stops it
// (and prints its log if the test failed) in t.Cleanup. The binary comes from
// internal/testenv, so a missing binary fails the test with a message that
// says to run scripts/deps.sh, unless HANGAR_SKIP_MINIO=1.
//
// StartProcess is the same without a testing.TB, for a TestMain or a command;
// the caller then owns the Server and must Close it.
//
// Stop and Restart take the server down and bring it back on the same port,
// data directory and credentials, so that tests can simulate a store outage.
//
// Tests should start one server per test binary and give each test its own
// bucket (NewBucket): starting MinIO takes about a second.
package miniotest
