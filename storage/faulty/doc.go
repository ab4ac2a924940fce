// Package faulty wraps a storage.Store and makes it misbehave on command,
// for tests of everything that must survive a bad store: the retry wrapper,
// the upload and download pipelines, the snapshot commit (kopia's
// internal/blobtesting/faulty.go plays the same role).
//
// Faults are queued per operation and consumed by calls in order: fail the
// Nth Put, make the next three Gets slow, fail a Create after it took
// effect (an ambiguous failure, as when a response is lost on the network).
// An outage switch makes every call fail until it is switched off again,
// and a random mode fails a share of all calls with transient errors. All
// settings may change while the store is in use.
//
// Injected errors wrap ErrInjected and never wrap a storage sentinel, so
// the retry wrapper treats them as transient.
package faulty
