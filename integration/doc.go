// Package integration holds the control plane's integration tests with
// real parts: the `hangar` binary built from this tree, run as one
// `hangar server` process and two `hangar host` processes (host-a,
// host-b) with their own data directories and chunk caches, sharing only
// a bucket on a real MinIO server (internal/miniotest), and booting real
// QEMU guests under TCG from the default guest image.
//
// The package has no non-test code; the tests are:
//
//   - TestAPIFlow, through the generated Go client (api.ClientWithResponses):
//     create on host-a, standby (until central), restore lands on host-b
//     with the guest's RAM intact, standby there, fork on host-a, list,
//     delete; and no QEMU process is left once the hosts stop.
//   - TestCLIFlow, the same flow through the CLI binary, checking its
//     --json output and its documented exit codes.
//   - TestCatalogRecovery: the server's state dir is deleted and a new
//     server against the same bucket, before any host re-registers, shows
//     every snapshot and standby instance again; the recovered instance
//     then restores on the other host.
//
// How a test sees guest memory: the public API has no access to guests,
// by design. The tests run on the hosts' machine, so they read the agent
// socket that the host's instance manager records in
// <data_dir>/i/<instance id>/instance.json and talk to the guest agent
// (vmhost/guest/agent) directly: a random token written to the guest's
// RAM-backed /run, the agent's boot id and its in-memory counter must
// survive standby, restore on another host and fork.
//
// Cost: each test boots one 128 MiB guest; restores and forks resume
// from memory. A missing QEMU, guest kernel or MinIO fails the tests;
// they skip only with HANGAR_SKIP_QEMU=1 or HANGAR_SKIP_MINIO=1.
package integration
