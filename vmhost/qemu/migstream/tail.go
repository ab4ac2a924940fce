package migstream

import (
	"encoding/binary"
	"fmt"
	"io"
)

// tail copies the rest of the stream, from the first non-iterable
// section on, as it is: the device sections, QEMU_VM_EOF and the JSON
// description of the sections (QEMU_VM_VMDESCRIPTION, be32 length, JSON),
// which QEMU 7.2 appends unless the machine suppresses it. The device
// sections have no length fields, so they are not parsed; the tail is
// accepted only if it ends the way QEMU ends a stream: a section footer,
// QEMU_VM_EOF, then a description whose length reaches exactly the end.
// That catches a stream cut short anywhere in the tail.
func (c *converter) tail(head []byte) error {
	if !c.ramEnded {
		return fmt.Errorf("%w: device state before the end of the ram section", ErrMalformed)
	}
	if err := c.flushRun(); err != nil {
		return err
	}
	s := &tailScan{}
	defer func() { c.stats.TailBytes = s.n }()
	s.Write(head)
	if err := c.emit(head); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := c.br.Read(buf)
		if n > 0 {
			c.pos += int64(n)
			s.Write(buf[:n])
			if werr := c.emit(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read stream: %w", err)
		}
	}
	if !s.complete() {
		return fmt.Errorf("%w: stream ends early (no complete section footer, end marker and vmstate description at its end)", ErrMalformed)
	}
	return nil
}

// tailScan watches a byte stream for the pattern
// 7e <be32 section id> 00 06 <be32 n> and remembers where each such
// description would end; complete reports whether one ends at the end.
type tailScan struct {
	n    int64
	last [11]byte // the latest bytes, last[10] the newest
	ends []int64
}

func (s *tailScan) Write(p []byte) {
	for _, b := range p {
		copy(s.last[:], s.last[1:])
		s.last[10] = b
		s.n++
		if s.n >= 11 && s.last[0] == secFooter && s.last[5] == secEOF && s.last[6] == secVMDescription {
			end := s.n + int64(binary.BigEndian.Uint32(s.last[7:]))
			// Keep only candidates still reachable; random device
			// bytes rarely match, so the list stays tiny.
			keep := s.ends[:0]
			for _, e := range s.ends {
				if e >= s.n {
					keep = append(keep, e)
				}
			}
			s.ends = append(keep, end)
		}
	}
}

func (s *tailScan) complete() bool {
	if s.last[10] != '}' {
		return false
	}
	for _, e := range s.ends {
		if e == s.n {
			return true
		}
	}
	return false
}
