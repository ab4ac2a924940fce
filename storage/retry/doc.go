// Package retry wraps a storage.Store and retries failed calls with
// exponential backoff and jitter, within a bounded budget (a number of
// attempts and a wall-clock allowance), like restic's backend/retry and
// kopia's repo/blob/retrying. It is stacked once, at wiring time, over the
// backend (usually over the metrics wrapper, so that every attempt is
// measured and every retry counted through Config.OnRetry).
//
// One function, isRetriable, decides what is retried: never the storage
// sentinels (ErrNotFound, ErrAlreadyExists, ErrCorrupt, ErrInvalidKey,
// ErrInvalidRange),
// never anything once the caller's context is done, never a
// context.Canceled; everything else is assumed transient.
//
// What a retry does per method:
//
//   - Put and Create rewind the body to where it was when the call began
//     before each new attempt.
//   - Create after an ambiguous failure (an attempt failed in a way that
//     may have hidden a success, e.g. a lost response) that then meets
//     ErrAlreadyExists compares the stored object with its own body and
//     reports success when they are equal: that object is this call's own
//     write (or an identical one, which is as good for a commit point).
//     Otherwise ErrAlreadyExists stands.
//   - List resumes after the last key handed to fn, so fn never sees a key
//     twice; an error returned by fn is never retried.
//   - Get retries opening the object; an error while reading the returned
//     body is the caller's to handle.
package retry
