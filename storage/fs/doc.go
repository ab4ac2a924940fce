// Package fs is a storage.Store in a local directory: the embedded default
// for one machine (hangar dev, a single host) and the backend that the
// conformance suite runs on without a server.
//
// Layout: the object with key "chunks/ab/abcd…" is the regular file
// <root>/chunks/ab/abcd…. Keys are checked with storage.ValidateKey before
// they are joined to the root, and every file operation goes through an
// os.Root, so no key (and no symlink planted in the tree) can reach a file
// outside the root.
//
// Writes are atomic: the body goes to a temporary file in the destination
// directory ("~tmp-<random>", a name no valid key can have, because '~' is
// not a key byte), which is fsynced and then renamed over the key (Put) or
// hard-linked to it (Create; link(2) fails with EEXIST atomically, so exactly
// one of any number of concurrent writers wins, across processes too), and
// the directory is fsynced. A reader therefore sees the old object or the
// new one, never a partial one. Temporary files are removed when a write
// fails; one left by a crashed process is invisible to Get, Stat and List
// and is removed by RemoveStaleTemp.
//
// A directory cannot be both an object and a prefix of other keys, so this
// store cannot hold "a" and "a/b" at once (an S3 bucket can); hangar's key
// layout never needs both. Empty directories left by Delete are kept: they
// cost nothing and removing them would race with concurrent writers.
package fs
