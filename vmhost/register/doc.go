// Package register announces a host daemon to the hangar server and keeps
// it announced: it registers the host (POST /cluster/v1/hosts: id, the
// base URL of its host API, capacity, version, guest image digests) and
// then heartbeats (PUT /cluster/v1/hosts/{id}/heartbeat) with a report of
// the host's instances, snapshots, jobs, chunk cache and health, every
// heartbeat_interval_seconds the server asks for.
//
// Vocabulary and behaviour:
//
//   - A request is one HTTP call, made through the generated hostapi
//     client over hashicorp/go-retryablehttp: transport errors, 429 and 5xx
//     answers are retried a few times with exponential backoff and jitter
//     inside the call (checkRetry is the one place that decides).
//   - An attempt that still fails (the server is down, or refuses with a
//     4xx) is retried by Run's loop after a longer backoff with jitter, so
//     that many hosts of a cluster whose server restarts do not come back
//     in step. The loop never gives up while its context lives: a host
//     without its server keeps its VMs and keeps knocking.
//   - A heartbeat answered 404 not_found means the server forgot the host
//     (it restarted, or dropped the host after missed heartbeats): Run
//     registers again at once, then heartbeats.
//   - Run stops when its context is cancelled and returns nil; every wait
//     selects on ctx.Done().
//
// The report itself comes from a Reporter (the host API server builds it
// from the instance manager), called once per heartbeat on Run's
// goroutine.
package register
