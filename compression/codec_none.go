package compression

import "fmt"

// noneCodec stores chunks as they are. The chunk layer uses it when the
// operator disabled compression, and may use it for a chunk whose compressed
// form would not be smaller.
type noneCodec struct{}

var _ Codec = (*noneCodec)(nil)

func (*noneCodec) ID() ID               { return IDNone }
func (*noneCodec) Algorithm() Algorithm { return None }
func (*noneCodec) Level() int           { return 0 }

func (*noneCodec) Encode(dst, src []byte) ([]byte, error) {
	return append(dst, src...), nil
}

func (*noneCodec) Decode(dst, src []byte, rawLen int) ([]byte, error) {
	if err := checkRawLen(rawLen); err != nil {
		return dst, err
	}
	if len(src) != rawLen {
		return dst, fmt.Errorf("none: %w: payload is %d bytes, want %d", ErrCorrupt, len(src), rawLen)
	}
	return append(dst, src...), nil
}
