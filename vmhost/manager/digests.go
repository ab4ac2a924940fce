package manager

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hangar-vm/hangar/storage/digests"
)

// digestKeyFile is the host's digest key in the data directory
// (storage/digests): created once, 0600, never inside a runtime directory
// and so never near a guest.
const digestKeyFile = "digest.key"

// loadDigestKey loads (creating it the first time) the host's digest key.
// Without it uploads hash every chunk, which is correct, only slower: a
// key file that cannot be used is logged, not fatal.
func loadDigestKey(dataDir string, log *slog.Logger) *digests.Key {
	k, err := digests.LoadOrCreateKey(filepath.Join(dataDir, digestKeyFile))
	if err != nil {
		log.Warn("chunk digests off: uploads hash every chunk", "err", err)
		return nil
	}
	return k
}

// Chunk digests follow the memory file. Uploads (UploadOptions.DigestKey)
// and downloads (DownloadOptions.DigestKey) write a file's record beside
// it (digests.PathFor), and a directory renamed whole (download → runtime
// directory, snapshot → runtime directory) takes it along. Where only the
// memory file moves or is copied (standby, a named snapshot, a fork or a
// rollback from local files) these carry the record too, so that the next
// upload of that memory hashes only the chunks the guest changed. A
// record is correct however stale (storage/digests): carrying an old one
// costs nothing but speed, and losing one (a crash in between) only makes
// the next upload hash everything.

// moveDigests renames the record of the file from to be the record of the
// file to, which the caller has just renamed there.
func (m *Manager) moveDigests(from, to string) {
	err := os.Rename(digests.PathFor(from), digests.PathFor(to))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Warn("move chunk digests; the next upload hashes every chunk", "from", from, "to", to, "err", err)
	}
}

// copyDigests copies the record of the file from to be the record of the
// file to, a copy of it.
func (m *Manager) copyDigests(from, to string) {
	if m.digestKey == nil {
		return
	}
	b, err := os.ReadFile(digests.PathFor(from))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		err = os.WriteFile(digests.PathFor(to), b, 0o600)
	}
	if err != nil {
		m.log.Warn("copy chunk digests; the next upload hashes every chunk", "from", from, "to", to, "err", err)
	}
}
