package vmhost

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Copy methods reported by CopySparse.
const (
	CopyReflink  = "reflink" // FICLONE: shared extents, copy-on-write (btrfs, xfs)
	CopySeekData = "sparse"  // SEEK_DATA/SEEK_HOLE + copy_file_range
)

// CopySparse copies the file src to dst (created; it must not exist) so
// that dst is sparse wherever src is: a fork's private memory file, or a
// snapshot's copy of a running guest's RAM, which must cost neither the
// time nor the disk of a full copy. Where the
// filesystem can share extents (FICLONE: btrfs, xfs with reflink) the copy
// is a clone and takes no time; elsewhere (ext4, tmpfs) only the data
// regions that SEEK_DATA/SEEK_HOLE report are copied, with
// copy_file_range, so the kernel moves the bytes without a round trip
// through user space. It returns the method used.
func CopySparse(src, dst string) (method string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return "", err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	// dst is not fsynced: callers that need it durable sync it (a
	// snapshot does, after the guest resumed).
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return CopyReflink, nil
	}
	size := st.Size()
	if err := out.Truncate(size); err != nil {
		return "", err
	}
	ifd, ofd := int(in.Fd()), int(out.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(ifd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return "", fmt.Errorf("seek data in %s: %w", src, err)
		}
		hole, err := unix.Seek(ifd, data, unix.SEEK_HOLE)
		if err != nil {
			return "", fmt.Errorf("seek hole in %s: %w", src, err)
		}
		if err := copyRange(ifd, ofd, data, hole-data); err != nil {
			return "", fmt.Errorf("copy %s: %w", src, err)
		}
		off = hole
	}
	return CopySeekData, nil
}

// copyRange copies n bytes at off from ifd to ofd, at the same offset.
func copyRange(ifd, ofd int, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		c, err := unix.CopyFileRange(ifd, &roff, ofd, &woff, int(min(n, 1<<30)), 0)
		if err != nil {
			return err
		}
		if c == 0 {
			return io.ErrUnexpectedEOF
		}
		n -= int64(c)
	}
	return nil
}
