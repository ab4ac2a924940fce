// Package metrics wraps a storage.Store and records what passes through it
// with OpenTelemetry metrics: calls, errors and latency per operation, and
// the bytes written to and read from the store. The Prometheus exporter is
// wired elsewhere; this package only needs a metric.Meter.
//
// Instruments (attribute "op" is get, put, create, stat, list or delete):
//
//   - hangar.store.calls{op}: calls, counted when they end;
//   - hangar.store.errors{op, error}: failed calls, with "error" one of
//     not_found, already_exists, invalid_key, corrupt, canceled, other —
//     not_found from a Stat is how callers ask "is it there?", so dashboards
//     can leave it out;
//   - hangar.store.duration{op}: call latency in seconds (for Get, the time
//     to open the object, not to read it);
//   - hangar.store.bytes{direction}: bytes sent to the store by successful
//     Put and Create ("out") and read back from Get bodies ("in");
//   - hangar.store.retries{op}: retries made by the retry wrapper stacked
//     above, fed through CountRetry (retry.Config.OnRetry).
//
// Stacked below the retry wrapper, it sees every attempt.
package metrics
