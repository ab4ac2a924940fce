// Package hostapi is the internal contract between hangar's server and its
// host daemons: hostapi.yaml and the Go code oapi-codegen generates from it.
// It reuses the public wire types (api.Instance, api.Snapshot, api.Job,
// api.Error ...) through references to ../openapi.yaml, so an error keeps its
// code from host to server to client: a host handler answers with
// api.ToError, the server's host client decodes with api.FromResponse, and
// errors.Is(err, api.ErrNotFound) holds on the server.
//
// Tag host: operations served by each host daemon (ServerInterface and
// StrictServerInterface in server.gen.go) and called by the server (Client).
// Tag cluster: registration and heartbeat, served by the server (by hand,
// with RegisterRequest, Heartbeat and RegisterResponse) and called by the
// host daemons with the same Client.
//
// Every call is authenticated with the cluster token and is safe to retry:
// instance and snapshot ids are chosen by the server and act as idempotency
// keys (see the spec's description).
package hostapi
