// Package storetest is the conformance suite every storage.Store must pass:
// the backends (mem, fs, s3) and the wrappers stacked around them (retry,
// faulty, metrics). It is written from the contracts in package storage, so
// a backend that passes it can replace any other.
//
// Use it from a backend's tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storage.Store {
//			s, err := fs.Open(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// newStore is called once per subtest and must return a fresh, empty store
// (registering its own cleanup with t.Cleanup). The suite never skips: a
// backend that cannot be reached fails it (the MinIO harness fails loudly
// when its binary is missing, like restic's SkipDisallowed).
//
// What the suite pins down beyond the doc comments in package storage:
//
//   - Get ranges: offset == size is valid and yields no bytes (with
//     length 0 or -1); offset+length > size, offset > size and a negative
//     offset are errors (not ErrNotFound), reported by Get or at the latest
//     by the reader before it would return io.EOF, never a short object.
//   - A method called with a context that is already cancelled returns an
//     error wrapping context.Canceled and changes nothing.
//   - A Put or Create whose reader yields fewer than size bytes fails and
//     leaves the key as it was (absent, or the old object).
//   - A directory-like prefix ("a" when "a/b" exists) is not an object:
//     Get and Stat report ErrNotFound.
package storetest
