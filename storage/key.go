package storage

import (
	"fmt"
	"strings"
)

// MaxKeyLen bounds object keys; S3 allows 1024 bytes.
const MaxKeyLen = 1024

// ValidateKey reports whether key is a valid object key: 1 to MaxKeyLen
// bytes, slash-separated segments of ASCII letters, digits and "._-", no
// empty, "." or ".." segment, no leading or trailing slash. Such a key can be
// joined to a directory without escaping it and needs no escaping in a URL.
// The error wraps ErrInvalidKey.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: length %d not in 1..%d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q has an empty, \".\" or \"..\" segment", ErrInvalidKey, key)
		}
		for i := 0; i < len(seg); i++ {
			if !keyByte(seg[i]) {
				return fmt.Errorf("%w: %q has byte %q", ErrInvalidKey, key, seg[i])
			}
		}
	}
	return nil
}

// ValidatePrefix is ValidateKey for a listing prefix, which may be empty and
// may end in a slash or in part of a segment.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		return fmt.Errorf("%w: prefix %q", ErrInvalidKey, prefix)
	}
	return ValidateKey(p)
}

func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}
