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
// The server's snapshot id is the snapshot's id everywhere: the manager
// writes the standby (and named) snapshot under it, and the compression
// the server resolved is applied as is (manager.StandbyOptions). Retries
// are recognised from the instance's persisted metadata (its snapshot,
// and the snapshot it was restored from), so also by a restarted daemon.
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
