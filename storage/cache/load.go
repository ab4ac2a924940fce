package cache

import (
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hangar-vm/hangar/storage/chunk"
)

// found is an entry read from the directory at Open.
type found struct {
	id    chunk.ID
	size  int64
	mtime time.Time
}

// isPrefix reports whether name is a prefix directory's: two lower-case hex
// digits.
func isPrefix(name string) bool {
	if len(name) != 2 {
		return false
	}
	for i := range 2 {
		if c := name[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// load rebuilds the index from the directory: it removes what cannot be an
// entry from the prefix directories, orders the rest by mtime (oldest =
// least recently used) and evicts down to max, in case max shrank since the
// last run. Other entries of the top directory are left alone: the cache
// deletes only in the layout it owns. Prefix directories are created by
// Put when first needed.
func (c *Cache) load() error {
	top, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	var all []found
	var dropped int
	for _, pe := range top {
		prefix := pe.Name()
		if !pe.IsDir() || !isPrefix(prefix) {
			if prefix != lockName {
				c.log.Warn("ignoring a file that is not part of the cache", "file", filepath.Join(c.dir, prefix))
			}
			continue
		}
		sub := filepath.Join(c.dir, prefix)
		ents, err := os.ReadDir(sub)
		if err != nil {
			return err
		}
		for _, de := range ents {
			f, why := c.inspect(sub, prefix, de)
			if why == "" {
				all = append(all, f)
				continue
			}
			p := filepath.Join(sub, de.Name())
			c.log.Info("removing leftover from the cache directory", "file", p, "reason", why)
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("remove %s (%s): %w", p, why, err)
			}
			dropped++
		}
	}

	slices.SortFunc(all, func(a, b found) int {
		if r := a.mtime.Compare(b.mtime); r != 0 {
			return r
		}
		return slices.Compare(a.id[:], b.id[:]) // a stable order for ties
	})
	for _, f := range all {
		// touched is the mtime, so a Get right after a restart writes
		// recency only if the interval has passed since then.
		c.index[f.id] = c.lru.PushFront(&entry{id: f.id, size: f.size, touched: f.mtime})
		c.bytes += f.size
	}
	if n := c.evictLocked(nil); n > 0 {
		c.log.Info("evicted chunks to fit the cache size", "evicted", n, "max_bytes", c.max)
	}
	if dropped > 0 {
		c.log.Info("cleaned the cache directory", "removed", dropped)
	}
	return nil
}

// inspect decides whether de, in prefix directory sub, is a cache entry. It
// returns the entry, or why it is not one.
func (c *Cache) inspect(sub, prefix string, de iofs.DirEntry) (found, string) {
	name := de.Name()
	if strings.HasPrefix(name, tempPrefix) {
		return found{}, "temporary file of an unfinished put"
	}
	id, err := chunk.ParseID(name)
	if err != nil {
		return found{}, "not a chunk id"
	}
	if name[:2] != prefix {
		return found{}, "chunk under the wrong prefix directory"
	}
	if !de.Type().IsRegular() {
		return found{}, "not a regular file"
	}
	fi, err := de.Info()
	if err != nil {
		return found{}, fmt.Sprintf("cannot stat: %v", err)
	}
	if why := checkFile(filepath.Join(sub, name), fi.Size()); why != "" {
		return found{}, why
	}
	return found{id: id, size: fi.Size(), mtime: fi.ModTime()}, ""
}

// checkFile reads the header of the file p, size bytes long, and says why it
// cannot be a stored chunk, or "" if it can.
func checkFile(p string, size int64) string {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Sprintf("cannot open: %v", err)
	}
	defer f.Close()
	head := make([]byte, min(size, chunk.HeaderSize))
	if _, err := io.ReadFull(f, head); err != nil {
		return fmt.Sprintf("cannot read header: %v", err)
	}
	if err := checkStored(size, head); err != nil {
		return err.Error()
	}
	return ""
}
