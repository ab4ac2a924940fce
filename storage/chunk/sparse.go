package chunk

import "io"

// SparsePage is the granularity at which WriteSparse skips zeros: the page
// size of the guests and hosts hangar targets, so a skipped run is whole
// file-system blocks that stay unallocated.
const SparsePage = 4096

// WriteSparse writes raw at off in w, skipping every all-zero page: w is a
// fresh (or hole-punched) sparse file, so a page not written reads back as
// zeros and stays a hole. Guest memory is mostly zero pages scattered
// inside non-zero chunks; not writing them saves the page-cache copy, the
// disk write and the disk space, and was the largest CPU cost of a
// download (the kernel's copy into fresh page-cache pages). Runs of
// non-zero pages go out in one WriteAt each.
func WriteSparse(w io.WriterAt, raw []byte, off int64) error {
	start := -1 // start of the current run of non-zero pages, or -1
	for p := 0; p < len(raw); p += SparsePage {
		if !IsZero(raw[p:min(p+SparsePage, len(raw))]) {
			if start < 0 {
				start = p
			}
			continue
		}
		if start >= 0 {
			if _, err := w.WriteAt(raw[start:p], off+int64(start)); err != nil {
				return err
			}
			start = -1
		}
	}
	if start >= 0 {
		if _, err := w.WriteAt(raw[start:], off+int64(start)); err != nil {
			return err
		}
	}
	return nil
}
