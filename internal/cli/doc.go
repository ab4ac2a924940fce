// Package cli is the hangar command tree (cobra): the daemons' commands,
// which load their configuration with internal/config and run until SIGINT
// or SIGTERM, and the client commands, which talk to the server's REST API
// through the generated api.ClientWithResponses (or, for `hangar store`, to
// the store directly). cmd/hangar only calls Run.
//
// Output: human tables (text/tabwriter) on stdout by default; with --json,
// stdout holds exactly one JSON document, the API's object (an instance, a
// snapshot, a list {"items": [...]}) or, for the commands that have no API
// object, one documented here. Errors go to stderr: "hangar: <message>
// (<code>)", or with --json one object {"code", "message", "exit_code"}.
// Progress bars go to stderr, only when it is a terminal and --json is off.
//
// Exit codes, which scripts can rely on:
//
//	0  success
//	1  any other error (internal server error, a failed upload, a timeout)
//	2  usage: bad flags or arguments, a bad configuration, or a request the
//	   server refused as invalid (invalid_request,
//	   invalid_snapshot_compression, invalid_snapshot_policy)
//	3  not found (not_found)
//	4  conflict or illegal state transition (conflict, invalid_state)
//	5  unavailable: no capacity, host unavailable, or the server cannot be
//	   reached (no_capacity, host_unavailable, connection errors)
//	6  unauthorized: missing or wrong token (unauthorized)
//	7  `hangar store verify` found missing or corrupt data
package cli
