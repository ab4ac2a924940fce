// Package hostapi serves a host daemon's HTTP API (api/host/hostapi.yaml,
// tag host) over the instance manager: the generated strict gin server of
// package api/host, implemented by Server, plus GET /healthz and
// GET /metrics.
//
// What every request goes through, in order (Server.Handler):
//
//   - the body is limited to Options.MaxBodyBytes;
//   - /host/v1 needs "Authorization: Bearer <cluster token>", compared in
//     constant time over SHA-256 digests (no length leak); anything else,
//     the user token included, is 401 unauthorized;
//   - a JSON body is decoded strictly into its operation's type first
//     (unknown fields, trailing data and wrong types are 400
//     invalid_request) without touching gin's process-wide decoder switch,
//     which the server in the same process (hangar dev) may set otherwise;
//   - path and body ids are checked with api.ValidateID before anything is
//     looked up, so no path is built from an unchecked id; the router sees
//     the raw path, so an escaped "../x" is a bad id (400), not a route miss;
//   - handler errors become {code, message} through toAPIError, the one
//     place that maps the manager's, the compression policy's, vmhost's and
//     storage's sentinels onto api error codes.
//
// Idempotency (the server retries after timeouts): server-chosen ids are
// the keys. Creating (or forking to) an instance id that exists with the
// same spec answers 200 with it, waiting while it is still Creating; with
// another spec 409 conflict. Deleting an absent instance or snapshot
// answers 204. A standby of an instance already on standby with the asked
// snapshot answers 200; a restore of an instance already Running answers
// 200.
//
// Known gap: the manager chooses standby snapshot ids itself
// (manager.Standby takes no id), so a standby answers the manager's
// snapshot id, not the server's snapshot_id; a retry with the server's id
// is recognised only by the process that served the first call. The fix
// is a snapshot id parameter on manager.Standby, after which the
// server's id is the snapshot's id everywhere.
//
// Long operations (create, standby, restore, fork, delete) are not
// cancelled when the caller hangs up, since a half-done boot helps nobody
// and a retry finds the finished one; they are cancelled by Server.Close
// (daemon shutdown).
//
// Capacity: creates, restores and forks reserve the spec's memory and
// vCPUs against Options.Capacity (instances Creating or Running count) and
// fail with 503 no_capacity beyond it.
package hostapi
