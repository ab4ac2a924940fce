// Package api is hangar's public REST API contract: openapi.yaml, the Go code
// oapi-codegen generates from it, and the error codes both sides share. It
// holds no handlers (those live in package server) and imports no other
// hangar package, so the server, the host daemons, the CLI and the e2e tests
// can all depend on it.
//
// Files:
//
//   - openapi.yaml: the source of truth. Every field has a description with
//     its meaning, units and range; compression precedence is written there.
//   - types.gen.go: wire types (Instance, Snapshot, Host, Job, Progress,
//     Compression, Error ...) and enums with prefixed constants
//     (InstanceStateRunning, SnapshotStateCentral, ErrorCodeNotFound).
//   - server.gen.go: the gin ServerInterface, the StrictServerInterface with
//     typed request and response objects (NewStrictHandlerWithOptions), and
//     GetSwagger, the parsed spec for request validation.
//   - client.gen.go: Client and ClientWithResponses; authenticate with
//     WithRequestEditorFn(BearerAuth(token)).
//   - errors.go: the error codes as sentinels (ErrNotFound ...), StatusFor,
//     ToError (server side) and FromResponse (client side), so errors.Is works
//     across the wire.
//   - ids.go: the id and name pattern and its validators.
//   - spec.go: openapi.yaml embedded verbatim for GET /openapi.yaml.
//
// Regenerate after editing a spec with `go generate ./api/...` and commit
// the result; TestGeneratedUpToDate fails when the committed code is stale.
//
// Vocabulary: an instance is a VM; it is Running, or on Standby (memory saved
// as a snapshot, first local on its host, then uploading, then central in the
// bucket). A snapshot is the saved state; a named one is kept until deleted,
// the standby one belongs to its instance. A job is a long operation on a
// host (upload, restore ...) with byte Progress.
//
// Request bodies: gin decodes them with encoding/json, which ignores unknown
// fields unless binding.EnableDecoderDisallowUnknownFields is set; the spec
// says unknown fields are rejected, so the server sets it (or validates
// requests against GetSwagger). The strict handler passes a nil Body to an
// operation whose body is optional (standby, restore) when the request has
// none.
package api
