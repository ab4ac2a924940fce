// Package e2e holds hangar's end-to-end tests: the whole system as a user
// runs it, as separate processes on 127.0.0.1, driven only through the
// `hangar` CLI and the public REST API (the generated
// api.ClientWithResponses).
//
// The stack: TestMain builds the hangar binary once (go build into a
// temporary directory) and the default guest image (build-image); the
// first test that needs the stack starts a MinIO server with its own data
// directory (internal/miniotest), `hangar server` with a generated YAML
// config, and two `hangar host` daemons (h1, h2) with their own data
// directories and chunk caches, under TCG with small guests. The stack is
// shared by the scenarios, which run one after another (never in
// parallel: two cores). Scenarios that break a process (host loss, store
// outage) either start their own extra host or bring the broken process
// back before they end. Every process logs to a file; when a test fails,
// the tail of every log is printed. TestMain stops everything and then
// checks that no MinIO, hangar or QEMU process started under the run's
// directory is left, failing the run if one is.
//
// Guest state is read from outside the guest through the guest agent: the
// test finds the instance's metadata in the data directory of the host the
// API says runs it (<data_dir>/i/<id>/instance.json, field agent_socket),
// dials that unix socket with vmhost/guest/agent's client and asks for the
// guest's State (a boot id and a counter that live only in guest RAM) and
// for files under /tmp (a tmpfs, so also RAM only). This is the one place
// the tests look behind the API: there is no CLI command that reads inside
// a guest, and the socket is what an operator on the host would use.
//
// Missing MinIO, QEMU or the guest kernel fail the tests (internal/testenv)
// unless HANGAR_SKIP_MINIO=1 or HANGAR_SKIP_QEMU=1 is set. Run with -v to
// see the per-test durations and the measured numbers (dedup, downloads);
// TestMain also prints a summary table at the end.
//
// compose_test.go keeps compose.yaml and the Dockerfile honest: it parses
// them and checks their services, ports, volumes and environment against
// the configuration keys that `hangar server` and `hangar host` accept
// (derived from internal/config's schema of server.Config and
// daemon.Config).
package e2e
