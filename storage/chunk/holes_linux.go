package chunk

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// holesOf returns r's hole finder: files have one. It also turns off the
// kernel's readahead on the file (POSIX_FADV_RANDOM, for this open file
// only): Split reads whole chunks, in parallel, so readahead buys nothing,
// and it would pull the holes next to data into the page cache as zero
// pages, which skipping them is meant to avoid.
func holesOf(r io.ReaderAt) holeFinder {
	f, ok := r.(*os.File)
	if !ok {
		return nil
	}
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.Fadvise(int(fd), 0, 0, unix.FADV_RANDOM) // advice only
		})
	}
	return sparseFile{f}
}

// sparseFile finds holes with lseek(SEEK_DATA). Concurrent use is safe:
// SEEK_DATA answers from its absolute offset, and reads are preads, which
// do not use the file position it moves.
type sparseFile struct{ f *os.File }

func (s sparseFile) inHole(off, n int64) bool {
	next, err := s.f.Seek(off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO): // no data at or after off
		return true
	case err != nil: // no SEEK_DATA on this file system: read it
		return false
	}
	return next >= off+n
}
