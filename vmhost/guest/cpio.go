package guest

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// cpioEntry is one member of an initramfs archive.
type cpioEntry struct {
	Name     string      // relative path, no leading slash
	Mode     fs.FileMode // type and permission bits
	Data     []byte      // file content, or a symlink's target
	DevMajor uint32      // device nodes
	DevMinor uint32
}

// writeCPIO writes entries as a newc ("070701") archive, the format the
// kernel unpacks into the initramfs. Output is a pure function of the
// entries: they are sorted by name (so a directory precedes its content),
// inode numbers are their positions, and owner, group and mtime are 0.
// That makes the image reproducible.
func writeCPIO(w io.Writer, entries []cpioEntry) error {
	sorted := append([]cpioEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for i, e := range sorted {
		if e.Name == "" || strings.HasPrefix(e.Name, "/") || path.Clean(e.Name) != e.Name || strings.HasPrefix(e.Name, "../") {
			return fmt.Errorf("cpio: bad name %q", e.Name)
		}
		if i > 0 && sorted[i-1].Name == e.Name {
			return fmt.Errorf("cpio: duplicate name %q", e.Name)
		}
		mode, err := cpioMode(e.Mode)
		if err != nil {
			return fmt.Errorf("cpio: %s: %w", e.Name, err)
		}
		nlink := 1
		if e.Mode.IsDir() {
			nlink = 2
		}
		if err := writeCPIORecord(w, uint32(i+1), mode, uint32(nlink), e.DevMajor, e.DevMinor, e.Name, e.Data); err != nil {
			return err
		}
	}
	return writeCPIORecord(w, 0, 0, 1, 0, 0, "TRAILER!!!", nil)
}

// cpioMode converts Go's file mode to the Unix st_mode the format stores.
func cpioMode(m fs.FileMode) (uint32, error) {
	perm := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	switch {
	case m.IsRegular():
		return 0o100000 | perm, nil
	case m.IsDir():
		return 0o040000 | perm, nil
	case m&fs.ModeSymlink != 0:
		return 0o120000 | perm, nil
	case m&fs.ModeCharDevice != 0:
		return 0o020000 | perm, nil
	case m&fs.ModeDevice != 0:
		return 0o060000 | perm, nil
	default:
		return 0, fmt.Errorf("unsupported file type %v", m.Type())
	}
}

func writeCPIORecord(w io.Writer, ino, mode, nlink, major, minor uint32, name string, data []byte) error {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	var buf []byte
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("cpio: write %s: %w", name, err)
	}
	if len(data) > 0 {
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("cpio: write %s: %w", name, err)
		}
		if n := (4 - len(data)%4) % 4; n > 0 {
			if _, err := w.Write(make([]byte, n)); err != nil {
				return fmt.Errorf("cpio: write %s: %w", name, err)
			}
		}
	}
	return nil
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
