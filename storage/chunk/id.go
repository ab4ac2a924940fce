package chunk

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// ID identifies a chunk: the SHA-256 of its raw (uncompressed) bytes. Equal
// raw bytes have one ID, whatever codec stored them.
type ID [sha256.Size]byte

// Digest is a keyed digest of a chunk's raw bytes, computed by whoever
// holds the key (storage/digests, through Options.Digest). Unlike an ID it
// is never stored centrally and means nothing without its key.
type Digest [32]byte

// Sum returns the ID of raw.
func Sum(raw []byte) ID { return sha256.Sum256(raw) }

// String returns the ID as 64 lower-case hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Key returns the object key the chunk is stored under:
// chunks/<first 2 hex digits>/<64 hex digits>. The two-digit prefix spreads
// chunks over 256 "directories", which keeps listings and the local
// filesystem backend's directories small.
func (id ID) Key() string {
	s := id.String()
	return "chunks/" + s[:2] + "/" + s
}

// IsZero reports whether id is the zero value, which no chunk has in
// practice: it marks "no id" (a hole).
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses the String form of an ID. It is strict: exactly 64
// lower-case hex digits, so that one chunk has exactly one key.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return ID{}, fmt.Errorf("invalid chunk id %q: want %d hex digits, got %d characters", s, 2*len(id), len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ID{}, fmt.Errorf("invalid chunk id %q: character %d is not a lower-case hex digit", s, i)
		}
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("invalid chunk id %q: %w", s, err)
	}
	return id, nil
}

// MarshalText and UnmarshalText make an ID a hex string in JSON (manifests).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
