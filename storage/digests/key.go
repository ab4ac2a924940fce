package digests

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/minio/highwayhash"

	"github.com/hangar-vm/hangar/storage/chunk"
)

// KeySize is the length of a key file: 32 random bytes.
const KeySize = 32

// Key is a host's secret digest key, with the subkeys derived from it. It
// redacts itself when printed or logged. A Key is immutable and safe for
// concurrent use.
type Key struct {
	digest [32]byte // HighwayHash-256 key of Digest
	mac    [32]byte // HMAC-SHA256 key of records
	id     [8]byte  // names the key in a record, so a foreign record says so
}

// NewKey derives a Key from secret, which must be KeySize bytes (from
// crypto/rand: LoadOrCreateKey makes one).
func NewKey(secret []byte) (*Key, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("digest key: %d bytes, want %d", len(secret), KeySize)
	}
	// Each use gets its own subkey (HMAC-SHA256 of a label under the
	// secret), so that no value computed for one use is valid in another.
	sub := func(label string) [32]byte {
		h := hmac.New(sha256.New, secret)
		h.Write([]byte(label))
		return [32]byte(h.Sum(nil))
	}
	k := &Key{digest: sub("hangar chunk digest v1"), mac: sub("hangar chunk digests record mac v1")}
	id := sub("hangar chunk digests key id v1")
	copy(k.id[:], id[:])
	return k, nil
}

// Digest returns the keyed digest of raw: HighwayHash-256 under the key's
// digest subkey. It is chunk.Options.Digest.
func (k *Key) Digest(raw []byte) chunk.Digest {
	return highwayhash.Sum(raw, k.digest[:])
}

// String redacts the key.
func (k *Key) String() string { return "digests.Key(redacted)" }

// GoString redacts the key (%#v).
func (k *Key) GoString() string { return k.String() }

// LogValue redacts the key in slog.
func (k *Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// LoadOrCreateKey reads the key file at path, creating it first if it does
// not exist: KeySize bytes from crypto/rand, mode 0600, written whole
// (temporary file, fsync, then a hard link to path, so that two processes
// racing to create it end up with one key). An existing file must be
// exactly KeySize bytes and not readable by group or others; anything else
// is an error that names the file, and the caller decides what to do (a
// host runs on without the optimisation: see vmhost/manager).
func LoadOrCreateKey(path string) (*Key, error) {
	k, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	secret := make([]byte, KeySize)
	if _, err := io.ReadFull(rand.Reader, secret); err != nil {
		return nil, fmt.Errorf("create digest key %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create digest key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(secret)
	if err == nil {
		err = tmp.Chmod(0o600) // CreateTemp makes 0600; say so whatever the umask
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("create digest key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create digest key %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return readKey(path) // ours, or the one a racing process linked first
}

func readKey(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("digest key %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("digest key %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("digest key %s: mode %v lets others read it; want 0600 (chmod it, or remove it to make a new key)", path, perm)
	}
	secret, err := io.ReadAll(io.LimitReader(f, KeySize+1))
	if err != nil {
		return nil, fmt.Errorf("digest key %s: %w", path, err)
	}
	if len(secret) != KeySize {
		return nil, fmt.Errorf("digest key %s: %d bytes, want %d (remove it to make a new key)", path, len(secret), KeySize)
	}
	return NewKey(secret)
}
