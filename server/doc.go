// Package server is hangar's control plane (`hangar server`): the public
// REST API of api/openapi.yaml on gin, the cluster endpoints the host
// daemons register and heartbeat on, the host registry, placement, routing
// of instance and snapshot operations to hosts, and the catalog of
// instances and snapshots recovered from the bucket.
//
// Vocabulary and files:
//
//   - config.go: Config (one YAML document, ParseConfig), defaults in
//     WithDefaults, Validate reporting every problem; Secret redacts tokens.
//   - server.go: New, Handler, Run/Serve, Close; the gin engine (routes).
//   - auth.go: the user token opens /v1/..., /metrics and /openapi.yaml,
//     the cluster token /cluster/v1/...; /healthz needs none. Tokens are
//     compared in constant time, through their SHA-256.
//   - errors.go: the one middleware that turns every error into a status
//     and {code, message} (api.ToError), and the mappings into it:
//     undecodable bodies, compression policy problems, unreachable hosts.
//   - registry.go: hosts register (id, address of their host API, capacity)
//     and heartbeat (instances, snapshots, jobs, cache summary). A host
//     silent for missed_heartbeats × heartbeat_interval is unavailable:
//     requests for its instances get 503 host_unavailable, while its
//     central snapshots can be restored elsewhere.
//   - placement.go: place, a pure function: an explicit host is honoured
//     or refused (404, 503 host_unavailable, 503 no_capacity); otherwise
//     the available host with room that holds the snapshot's files, then
//     one that has its chunks cached, then the most free memory.
//   - hostclient.go: HostClient, the host API as a Go interface (the same
//     method set the host's manager serves), and HTTPHostClient, its real
//     implementation over the generated client with go-retryablehttp.
//   - instances.go, snapshots.go, handlers.go: the strict server interface.
//     Each handler validates all its input first, then checks state under
//     the lock, marks the instance busy (one operation at a time), calls
//     the host without the lock, and records the outcome. A rejected
//     request changes nothing.
//   - catalog.go: records, heartbeat merge, recovery from the bucket
//     (snapshot.Repo.List), and the crash-safe cache in the state dir.
//   - the central store is opened by storage/storeconfig.Open, the one
//     place retry(metrics(backend)) is stacked (shared with the hosts).
//   - metrics.go: requests by route and status, hosts by state, placement
//     decisions, catalog syncs; exported at /metrics with the OpenTelemetry
//     Prometheus exporter on the server's own registry.
//
// Compression precedence (DESIGN §4): request override > instance
// snapshot_policy > snapshot.compression_default, resolved by
// compression.Resolve before any state changes; a bad override is 400
// invalid_snapshot_compression, a bad instance policy 400
// invalid_snapshot_policy. Hosts receive the resolved setting.
package server
