package chunk

import (
	"encoding/binary"
	"fmt"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
)

// Stored-form constants (see doc.go for the byte layout).
const (
	// HeaderSize is the length of the header before the payload.
	HeaderSize = 12
	// Version is the format version this package writes. Decode accepts
	// only this version; a later version bumps it rather than reusing the
	// reserved bytes silently.
	Version = 1
)

// magic opens every stored chunk: "HGCK" (hangar chunk).
var magic = [4]byte{'H', 'G', 'C', 'K'}

// corruptError is the type of the package's decoding errors: each is its own
// sentinel, and each also matches storage.ErrCorrupt, so that callers that
// only care whether stored bytes are bad (retry elsewhere, report, GC) test
// one error and callers that care why test the specific one.
type corruptError string

func (e corruptError) Error() string        { return string(e) }
func (e corruptError) Is(target error) bool { return target == storage.ErrCorrupt }

// Errors returned by ParseHeader and Decode. Each matches storage.ErrCorrupt
// with errors.Is, and Decode's messages name the chunk id.
var (
	// ErrTruncated: the object is shorter than the header.
	ErrTruncated error = corruptError("chunk truncated")
	// ErrBadMagic: the object does not start with the chunk magic.
	ErrBadMagic error = corruptError("not a chunk (bad magic)")
	// ErrUnsupportedVersion: a format version (or reserved flags) this
	// build does not know.
	ErrUnsupportedVersion error = corruptError("unsupported chunk format version")
	// ErrUnknownCodec: the header names a codec id not in the compression
	// registry. The error also matches compression.ErrUnknownCodec.
	ErrUnknownCodec error = corruptError("unknown chunk codec")
	// ErrTooLarge: the header's raw length exceeds MaxSize. It is rejected
	// before anything is allocated for it.
	ErrTooLarge error = corruptError("chunk raw length over the maximum")
	// ErrLengthMismatch: the payload's length does not fit the raw length:
	// an uncompressed payload of another length, a compressed payload not
	// shorter than the raw length (Encode never writes one), or a codec that
	// returned another length.
	ErrLengthMismatch error = corruptError("chunk length mismatch")
	// ErrBadPayload: the codec rejected the payload (not a valid stream, or
	// one that does not decode to exactly the raw length). It also matches
	// the codec's compression.ErrCorrupt.
	ErrBadPayload error = corruptError("chunk payload does not decode")
	// ErrIDMismatch: the payload decoded to bytes whose SHA-256 is not the
	// chunk id asked for.
	ErrIDMismatch error = corruptError("chunk content does not match its id")
)

// Header is the parsed fixed-size header of a stored chunk.
type Header struct {
	Version uint8
	Codec   compression.ID
	// RawLen is the length of the raw (decoded) bytes, 0..MaxSize.
	RawLen int
}

// ParseHeader parses and checks the header at the start of stored: length,
// magic, version and reserved flags, codec id (against the compression
// registry) and raw length (at most MaxSize). It does not look at the payload.
func ParseHeader(stored []byte) (Header, error) {
	if len(stored) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, the header alone is %d", ErrTruncated, len(stored), HeaderSize)
	}
	if [4]byte(stored[0:4]) != magic {
		return Header{}, fmt.Errorf("%w: starts with %q", ErrBadMagic, stored[0:4])
	}
	h := Header{
		Version: stored[4],
		Codec:   compression.ID(stored[5]),
	}
	if h.Version != Version {
		return Header{}, fmt.Errorf("%w: %d (this build reads %d)", ErrUnsupportedVersion, h.Version, Version)
	}
	if flags := binary.LittleEndian.Uint16(stored[6:8]); flags != 0 {
		return Header{}, fmt.Errorf("%w: reserved flags %#04x set, version %d defines none", ErrUnsupportedVersion, flags, Version)
	}
	if _, err := compression.ForID(h.Codec); err != nil {
		return Header{}, fmt.Errorf("%w %d: %w", ErrUnknownCodec, byte(h.Codec), err)
	}
	rawLen := binary.LittleEndian.Uint32(stored[8:12])
	if rawLen > MaxSize {
		return Header{}, fmt.Errorf("%w: raw length %d, maximum %d", ErrTooLarge, rawLen, MaxSize)
	}
	h.RawLen = int(rawLen)
	return h, nil
}

// putHeader writes a version-1 header into b[:HeaderSize].
func putHeader(b []byte, codec compression.ID, rawLen int) {
	copy(b[0:4], magic[:])
	b[4] = Version
	b[5] = byte(codec)
	binary.LittleEndian.PutUint16(b[6:8], 0)
	binary.LittleEndian.PutUint32(b[8:12], uint32(rawLen))
}

// Encode appends the stored form of raw (header and payload) to dst and
// returns it. c compresses the payload; a nil c means no compression.
//
// When the compressed payload is not smaller than raw, the chunk is stored
// uncompressed with codec none instead, so a chunk never costs more than
// HeaderSize bytes over its raw length. The chunk id is that of the raw
// bytes, so equal raw bytes are one object whatever codec the writer asked
// for: the first writer's stored form is the one kept. Callers learn the
// codec actually used from the header (ParseHeader) or Chunk.Codec.
//
// raw may be at most MaxSize bytes, and c must be a codec of the compression
// registry (one Decode can read back).
func Encode(dst, raw []byte, c compression.Codec) ([]byte, error) {
	if len(raw) > MaxSize {
		return dst, fmt.Errorf("encode chunk: %d bytes is over the maximum chunk size %d", len(raw), MaxSize)
	}
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	if c != nil && c.ID() != compression.IDNone {
		out, ok, err := compress(dst, raw, c)
		if err != nil {
			return dst[:start], err
		}
		if ok {
			putHeader(out[start:], c.ID(), len(raw))
			return out, nil
		}
		dst = out[:start+HeaderSize] // keep any capacity the codec grew
	}
	dst = append(dst, raw...)
	putHeader(dst[start:], compression.IDNone, len(raw))
	return dst, nil
}

// compress appends c's payload for raw to dst. ok reports whether it is
// smaller than raw; if not, the caller stores raw instead.
func compress(dst, raw []byte, c compression.Codec) (out []byte, ok bool, err error) {
	if _, err := compression.ForID(c.ID()); err != nil {
		return dst, false, fmt.Errorf("encode chunk with codec %s: %w", c.ID(), err)
	}
	out, err = c.Encode(dst, raw)
	if err != nil {
		return dst, false, fmt.Errorf("encode chunk with %s level %d: %w", c.Algorithm(), c.Level(), err)
	}
	return out, len(out)-len(dst) < len(raw), nil
}

// Decode checks the stored chunk, decodes its payload, appends the raw bytes
// to dst and returns it. The result is returned only if its length is the
// header's raw length and its SHA-256 is want: Decode never hands back bytes
// that are not the chunk asked for. Every failure is one of the package's
// errors (all matching storage.ErrCorrupt) and names want; on failure the
// returned slice is dst (bytes past its length may have been written).
func Decode(dst, stored []byte, want ID) ([]byte, error) {
	h, err := ParseHeader(stored)
	if err != nil {
		return dst, fmt.Errorf("decode chunk %s: %w", want, err)
	}
	payload := stored[HeaderSize:]
	n := len(dst)
	var out []byte
	if h.Codec == compression.IDNone {
		if len(payload) != h.RawLen {
			return dst, fmt.Errorf("decode chunk %s: %w: uncompressed payload is %d bytes, raw length %d", want, ErrLengthMismatch, len(payload), h.RawLen)
		}
		out = append(dst, payload...)
	} else {
		if len(payload) >= h.RawLen {
			return dst, fmt.Errorf("decode chunk %s: %w: %s payload is %d bytes, not shorter than raw length %d", want, ErrLengthMismatch, h.Codec, len(payload), h.RawLen)
		}
		c, err := compression.ForID(h.Codec)
		if err != nil { // ParseHeader checked it; kept for safety
			return dst, fmt.Errorf("decode chunk %s: %w: %w", want, ErrUnknownCodec, err)
		}
		out, err = c.Decode(dst, payload, h.RawLen)
		if err != nil {
			return dst, fmt.Errorf("decode chunk %s: %w: %w", want, ErrBadPayload, err)
		}
		if len(out)-n != h.RawLen {
			return dst, fmt.Errorf("decode chunk %s: %w: %s decoded %d bytes, raw length %d", want, ErrLengthMismatch, h.Codec, len(out)-n, h.RawLen)
		}
	}
	if got := Sum(out[n:]); got != want {
		return dst, fmt.Errorf("decode chunk %s: %w: content hashes to %s", want, ErrIDMismatch, got)
	}
	return out, nil
}
