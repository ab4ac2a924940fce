// Package mem is an in-memory storage.Store for unit tests of the layers
// above the object store (chunk store, pipelines, GC) and for the
// conformance suite's reference run. It keeps every object in a map under
// one lock and shares nothing with the caller: stored bytes are copied in,
// and readers returned by Get see the version that was current when Get ran.
package mem
