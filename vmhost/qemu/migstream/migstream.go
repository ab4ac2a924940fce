// Package migstream splits one RAM block out of a QEMU 7.2 migration
// stream.
//
// A VM whose guest RAM maps its memory file privately (memory-backend-file
// share=off) cannot be parked the share=on way: x-ignore-shared skips only
// shared blocks, so its migration stream carries every RAM page. Convert
// reads such a stream and writes the pages of one block (the memory
// backend, "ram0") into a fresh memory file at their offsets, and the rest
// of the stream, those page records removed, to w. The pair is what a
// share=on standby of the same VM writes: the memory file plus a device
// state stream in which that block's RAM is absent, so the ordinary
// share=on restore (x-ignore-shared, migrate-incoming) resumes it.
//
// The format is QEMU 7.2's (migration/savevm.c, migration/ram.c), precopy
// only, with section footers and the configuration section: see
// docs/migstream.md. Anything else (multifd, compression, xbzrle, postcopy,
// RDMA hooks, iterable sections other than "ram") is refused with an error
// wrapping ErrUnsupported; a stream that breaks the grammar or ends early
// is an error wrapping ErrMalformed. Neither panics.
package migstream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

var (
	// ErrMalformed: the stream breaks the format or ends early.
	ErrMalformed = errors.New("malformed migration stream")
	// ErrUnsupported: the stream uses a feature the converter does not
	// handle (a capability, a section, a format version).
	ErrUnsupported = errors.New("unsupported migration stream")
)

// Stream framing (migration/savevm.c).
const (
	fileMagic   = 0x5145564d // "QEVM"
	fileVersion = 3

	secEOF           = 0x00
	secStart         = 0x01
	secPart          = 0x02
	secEnd           = 0x03
	secFull          = 0x04
	secSubsection    = 0x05
	secVMDescription = 0x06
	secConfiguration = 0x07
	secCommand       = 0x08
	secFooter        = 0x7e
)

// RAM records (migration/ram.c): a be64 holding a page-aligned address
// and flags in the bits below the page size.
const (
	pageSize = 4096 // TARGET_PAGE_SIZE of x86_64

	flagFull         = 0x01 // obsolete
	flagZero         = 0x02
	flagMemSize      = 0x04
	flagPage         = 0x08
	flagEOS          = 0x10
	flagContinue     = 0x20
	flagXBZRLE       = 0x40
	flagHook         = 0x80 // RDMA
	flagCompress     = 0x100
	flagMultifdFlush = 0x200 // QEMU 8.0 and later

	ramSectionVersion = 4
)

// Memory receives the block's pages. The converter calls Truncate once,
// with the block's length, before any WriteAt; it never writes a zero
// page, so a fresh file stays sparse where the guest RAM is zero.
// *os.File implements it.
type Memory interface {
	io.WriterAt
	Truncate(size int64) error
}

// Stats describes one conversion.
type Stats struct {
	InBytes    int64 // stream read
	OutBytes   int64 // stream written
	BlockBytes int64 // the block's length: the memory file's size
	Pages      int64 // data pages of the block written to Memory
	ZeroPages  int64 // zero pages of the block (holes in Memory)
	OtherPages int64 // page records of other blocks, kept in the stream
	TailBytes  int64 // device sections and end of stream, copied as they are
}

// Convert copies the migration stream r to w without the page records of
// the RAM block named block, which it writes to mem. It reads r to its
// end. It holds a few buffers and a bitmap of one bit per page of the
// block (allocated as pages arrive), whatever the stream's length. On error, what was written to w
// and mem is incomplete and must be discarded.
func Convert(r io.Reader, w io.Writer, mem Memory, block string) (Stats, error) {
	c := &converter{
		in:     &countReader{r: r},
		target: block,
		mem:    mem,
	}
	c.br = bufio.NewReaderSize(c.in, 256<<10)
	c.out = &countWriter{w: w}
	c.bw = bufio.NewWriterSize(c.out, 256<<10)
	err := c.convert()
	if err == nil {
		err = c.flushRun()
	}
	if err == nil {
		if ferr := c.bw.Flush(); ferr != nil {
			err = fmt.Errorf("write stream: %w", ferr)
		}
	}
	c.stats.InBytes = c.in.n
	c.stats.OutBytes = c.out.n
	if err != nil {
		return c.stats, fmt.Errorf("migration stream at byte %d: %w", c.pos, err)
	}
	return c.stats, nil
}

type ramBlock struct {
	id     string
	length int64
}

type converter struct {
	in  *countReader
	br  *bufio.Reader
	out *countWriter
	bw  *bufio.Writer
	pos int64 // stream offset of the next byte read

	target string
	mem    Memory
	stats  Stats

	ignoreShared bool
	blocks       map[string]*ramBlock
	tblock       *ramBlock // the target block, once MEM_SIZE named it
	written      pageSet   // target pages holding data in mem
	lastIn       *ramBlock // block of the last page record read
	lastOut      *ramBlock // block of the last page record written
	ramID        uint32
	ramStarted   bool
	ramEnded     bool

	// pending is a section header not written yet: a PART section of
	// the RAM holding only target pages disappears from the output.
	pending []byte

	// run is a contiguous run of target pages waiting to be written.
	runOff int64
	run    []byte
}

const maxRun = 1 << 20

func (c *converter) convert() error {
	hdr, err := c.read(8)
	if err != nil {
		return err
	}
	if m := binary.BigEndian.Uint32(hdr); m != fileMagic {
		return fmt.Errorf("%w: magic %#x, want %#x", ErrMalformed, m, fileMagic)
	}
	if v := binary.BigEndian.Uint32(hdr[4:]); v != fileVersion {
		return fmt.Errorf("%w: file version %d, want %d", ErrUnsupported, v, fileVersion)
	}
	if err := c.emit(hdr); err != nil {
		return err
	}
	first := true
	for {
		t, err := c.readByte()
		if err != nil {
			return err
		}
		switch t {
		case secConfiguration:
			if !first {
				return fmt.Errorf("%w: configuration section not at the start", ErrMalformed)
			}
			if err := c.configuration(); err != nil {
				return fmt.Errorf("configuration: %w", err)
			}
		case secStart, secFull:
			if first {
				return fmt.Errorf("%w: no configuration section (the converter needs its capability list)", ErrUnsupported)
			}
			done, err := c.sectionStart(t)
			if err != nil || done {
				return err
			}
		case secPart, secEnd:
			if err := c.sectionPart(t); err != nil {
				return err
			}
		case secEOF:
			// The device sections follow the RAM's end; a stream with
			// none still ends in the same tail.
			return c.tail([]byte{t})
		case secCommand:
			return fmt.Errorf("%w: command section (postcopy or return path)", ErrUnsupported)
		default:
			return fmt.Errorf("%w: section type %#x", ErrMalformed, t)
		}
		first = false
	}
}

// configuration copies QEMU_VM_CONFIGURATION: the machine type and the
// subsections QEMU 7.2 may send after it (savevm.c vmstate_configuration).
func (c *converter) configuration() error {
	b := []byte{secConfiguration}
	n, err := c.readU32()
	if err != nil {
		return err
	}
	if n > 256 {
		return fmt.Errorf("%w: machine name of %d bytes", ErrMalformed, n)
	}
	name, err := c.read(int(n))
	if err != nil {
		return err
	}
	b = binary.BigEndian.AppendUint32(b, n)
	b = append(b, name...)
	for {
		p, err := c.br.Peek(1)
		if err != nil {
			return c.readErr(err)
		}
		if p[0] != secSubsection {
			break
		}
		c.readByte()
		id, err := c.readString()
		if err != nil {
			return err
		}
		ver, err := c.readU32()
		if err != nil {
			return err
		}
		b = append(b, secSubsection, byte(len(id)))
		b = append(b, id...)
		b = binary.BigEndian.AppendUint32(b, ver)
		switch id {
		case "configuration/capabilities":
			count, err := c.readU32()
			if err != nil {
				return err
			}
			if count > 64 {
				return fmt.Errorf("%w: %d capabilities", ErrMalformed, count)
			}
			b = binary.BigEndian.AppendUint32(b, count)
			for range count {
				capName, err := c.readString()
				if err != nil {
					return err
				}
				if capName == "x-ignore-shared" {
					c.ignoreShared = true
				}
				b = append(b, byte(len(capName)))
				b = append(b, capName...)
			}
		case "configuration/uuid":
			u, err := c.read(16)
			if err != nil {
				return err
			}
			b = append(b, u...)
		case "configuration/target-page-bits":
			bits, err := c.readU32()
			if err != nil {
				return err
			}
			if bits != 12 {
				return fmt.Errorf("%w: target page bits %d", ErrUnsupported, bits)
			}
			b = binary.BigEndian.AppendUint32(b, bits)
		default:
			return fmt.Errorf("%w: subsection %q", ErrUnsupported, id)
		}
	}
	return c.emit(b)
}

// sectionStart handles START and FULL. The first FULL section (or EOF)
// ends the RAM: from there the stream is copied as it is.
func (c *converter) sectionStart(t byte) (done bool, err error) {
	b := []byte{t}
	id, err := c.readU32()
	if err != nil {
		return false, err
	}
	idstr, err := c.readString()
	if err != nil {
		return false, err
	}
	rest, err := c.read(8) // instance id, version id
	if err != nil {
		return false, err
	}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, byte(len(idstr)))
	b = append(b, idstr...)
	b = append(b, rest...)
	if t == secFull {
		return true, c.tail(b)
	}
	if idstr != "ram" {
		return false, fmt.Errorf("%w: iterable section %q (only ram is handled)", ErrUnsupported, idstr)
	}
	if c.ramStarted {
		return false, fmt.Errorf("%w: second ram section", ErrMalformed)
	}
	if v := binary.BigEndian.Uint32(rest[4:]); v != ramSectionVersion {
		return false, fmt.Errorf("%w: ram section version %d, want %d", ErrUnsupported, v, ramSectionVersion)
	}
	c.ramStarted, c.ramID = true, id
	if err := c.emit(b); err != nil {
		return false, err
	}
	if err := c.ram(true); err != nil {
		return false, fmt.Errorf("ram setup: %w", err)
	}
	if c.tblock == nil {
		return false, fmt.Errorf("%w: ram block %q not in the stream", ErrMalformed, c.target)
	}
	return false, c.footer(id, false)
}

func (c *converter) sectionPart(t byte) error {
	id, err := c.readU32()
	if err != nil {
		return err
	}
	if !c.ramStarted || id != c.ramID {
		return fmt.Errorf("%w: section %d continued, not the ram section", ErrMalformed, id)
	}
	if c.ramEnded {
		return fmt.Errorf("%w: ram section continued after its end", ErrMalformed)
	}
	b := binary.BigEndian.AppendUint32([]byte{t}, id)
	if t == secPart {
		c.pending = b
	} else {
		c.ramEnded = true
		if err := c.emit(b); err != nil {
			return err
		}
	}
	if err := c.ram(false); err != nil {
		return fmt.Errorf("ram: %w", err)
	}
	// A PART section left with nothing but its end marker is dropped
	// whole, as a share=on migration would not have sent it.
	drop := c.pending != nil
	c.pending = nil
	return c.footer(id, drop)
}

func (c *converter) footer(id uint32, drop bool) error {
	b, err := c.read(5)
	if err != nil {
		return err
	}
	if b[0] != secFooter || binary.BigEndian.Uint32(b[1:]) != id {
		return fmt.Errorf("%w: section %d: bad footer % x", ErrMalformed, id, b)
	}
	if drop {
		return nil
	}
	return c.emit(b)
}

// ram copies the records of one RAM section up to its EOS, taking out the
// target block's pages (ram.c ram_load_precopy).
func (c *converter) ram(setup bool) error {
	first := true
	for {
		v, err := c.readU64()
		if err != nil {
			return err
		}
		addr, flags := v&^(pageSize-1), v&(pageSize-1)
		switch {
		case flags&flagXBZRLE != 0:
			return fmt.Errorf("%w: xbzrle page (capability xbzrle)", ErrUnsupported)
		case flags&flagCompress != 0:
			return fmt.Errorf("%w: compressed page (capability compress)", ErrUnsupported)
		case flags&flagHook != 0:
			return fmt.Errorf("%w: RDMA hook record", ErrUnsupported)
		case flags&flagMultifdFlush != 0:
			return fmt.Errorf("%w: multifd flush record (QEMU 8 or later, multifd)", ErrUnsupported)
		case flags&^(flagZero|flagMemSize|flagPage|flagEOS|flagContinue) != 0:
			return fmt.Errorf("%w: ram record flags %#x", ErrMalformed, flags)
		}
		kind := flags &^ flagContinue
		if setup && first && kind != flagMemSize {
			return fmt.Errorf("%w: ram setup does not start with the block list", ErrMalformed)
		}
		first = false
		switch kind {
		case flagEOS:
			if flags != flagEOS || addr != 0 {
				return fmt.Errorf("%w: ram end record %#x", ErrMalformed, v)
			}
			if c.pending != nil {
				return nil // the whole section is dropped
			}
			return c.emit(binary.BigEndian.AppendUint64(nil, v))
		case flagMemSize:
			if !setup || c.blocks != nil || flags != flagMemSize {
				return fmt.Errorf("%w: block list outside the ram setup", ErrMalformed)
			}
			if err := c.blockList(v, addr); err != nil {
				return err
			}
		case flagZero, flagPage:
			if err := c.page(v, addr, flags); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: ram record flags %#x", ErrMalformed, flags)
		}
	}
}

// blockList copies the MEM_SIZE record: the total of the blocks' lengths,
// then each block's id and length (and, with x-ignore-shared, the address
// of its memory region).
func (c *converter) blockList(v uint64, total uint64) error {
	b := binary.BigEndian.AppendUint64(nil, v)
	c.blocks = map[string]*ramBlock{}
	for total > 0 {
		id, err := c.readString()
		if err != nil {
			return err
		}
		length, err := c.readU64()
		if err != nil {
			return err
		}
		b = append(b, byte(len(id)))
		b = append(b, id...)
		b = binary.BigEndian.AppendUint64(b, length)
		if c.ignoreShared {
			mr, err := c.readU64()
			if err != nil {
				return err
			}
			b = binary.BigEndian.AppendUint64(b, mr)
		}
		if length == 0 || length > total {
			return fmt.Errorf("%w: block %q of %d bytes, %d left in the list", ErrMalformed, id, length, total)
		}
		if _, dup := c.blocks[id]; dup {
			return fmt.Errorf("%w: block %q listed twice", ErrMalformed, id)
		}
		blk := &ramBlock{id: id, length: int64(length)}
		c.blocks[id] = blk
		total -= length
		if id == c.target {
			if length%pageSize != 0 {
				return fmt.Errorf("%w: block %q length %d not a whole number of pages", ErrMalformed, id, length)
			}
			if length > maxBlockBytes {
				return fmt.Errorf("%w: block %q of %d bytes, more than %d", ErrUnsupported, id, length, uint64(maxBlockBytes))
			}
			if err := c.mem.Truncate(int64(length)); err != nil {
				return fmt.Errorf("size memory file: %w", err)
			}
			c.tblock = blk
			c.stats.BlockBytes = int64(length)
			c.written = newPageSet(length / pageSize)
		}
	}
	return c.emit(b)
}

func (c *converter) page(v uint64, addr uint64, flags uint64) error {
	var blk *ramBlock
	var idstr string
	if flags&flagContinue != 0 {
		if c.lastIn == nil {
			return fmt.Errorf("%w: page continues no block", ErrMalformed)
		}
		blk = c.lastIn
	} else {
		id, err := c.readString()
		if err != nil {
			return err
		}
		blk, idstr = c.blocks[id], id
		if blk == nil {
			return fmt.Errorf("%w: page of unknown block %q", ErrMalformed, id)
		}
	}
	c.lastIn = blk
	// Kept pages need only start inside their block; the target's
	// must fit whole (its length is a whole number of pages).
	if addr >= uint64(blk.length) || (blk == c.tblock && uint64(blk.length)-addr < pageSize) {
		return fmt.Errorf("%w: page at %#x outside block %q (%d bytes)", ErrMalformed, addr, blk.id, blk.length)
	}
	var data []byte
	var err error
	if flags&flagZero != 0 {
		data, err = c.read(1) // the fill byte
	} else {
		data, err = c.read(pageSize)
	}
	if err != nil {
		return err
	}
	if blk == c.tblock {
		if flags&flagZero != 0 {
			c.stats.ZeroPages++
			return c.zeroPage(int64(addr), data[0])
		}
		c.stats.Pages++
		return c.dataPage(int64(addr), data)
	}
	c.stats.OtherPages++
	// Every block change in the input names the block, and the target's
	// records are the only ones removed, so a kept CONTINUE record
	// follows a kept record of its block. Name it anyway if not.
	hdr := make([]byte, 0, 8+1+len(blk.id))
	if flags&flagContinue != 0 && c.lastOut != blk {
		v &^= flagContinue
		idstr = blk.id
	}
	hdr = binary.BigEndian.AppendUint64(hdr, v)
	if v&flagContinue == 0 {
		hdr = append(hdr, byte(len(idstr)))
		hdr = append(hdr, idstr...)
	}
	c.lastOut = blk
	if err := c.emit(hdr); err != nil {
		return err
	}
	return c.emit(data)
}

// dataPage queues a page for the memory file, coalescing runs.
func (c *converter) dataPage(addr int64, data []byte) error {
	if len(c.run) > 0 && (c.runOff+int64(len(c.run)) != addr || len(c.run) >= maxRun) {
		if err := c.flushRun(); err != nil {
			return err
		}
	}
	if len(c.run) == 0 {
		c.runOff = addr
		if c.run == nil {
			c.run = make([]byte, 0, maxRun)
		}
	}
	c.run = append(c.run, data...)
	c.mark(addr, true)
	return nil
}

// zeroPage leaves a hole, unless the page was written before in this
// stream (sent again after the guest changed it): then it is overwritten.
func (c *converter) zeroPage(addr int64, fill byte) error {
	if fill == 0 && !c.marked(addr) {
		return nil
	}
	if err := c.flushRun(); err != nil {
		return err
	}
	page := make([]byte, pageSize)
	if fill != 0 {
		for i := range page {
			page[i] = fill
		}
	}
	if _, err := c.mem.WriteAt(page, addr); err != nil {
		return fmt.Errorf("write memory file: %w", err)
	}
	c.mark(addr, fill != 0)
	return nil
}

func (c *converter) flushRun() error {
	if len(c.run) == 0 {
		return nil
	}
	_, err := c.mem.WriteAt(c.run, c.runOff)
	c.run = c.run[:0]
	if err != nil {
		return fmt.Errorf("write memory file: %w", err)
	}
	return nil
}

func (c *converter) mark(addr int64, on bool) { c.written.set(uint64(addr)/pageSize, on) }

func (c *converter) marked(addr int64) bool { return c.written.has(uint64(addr) / pageSize) }

// maxBlockBytes bounds the target block (16 TiB): its page set's index
// is one pointer per 128 MiB of it.
const maxBlockBytes = 1 << 44

// pageSet is a bitmap of pages allocated 4 KiB (128 MiB of guest RAM) at
// a time, where a bit is first set: a block's length in the stream costs
// no memory until its pages arrive.
type pageSet struct{ chunks []*[512]uint64 }

const pagesPerChunk = 512 * 64

func newPageSet(pages uint64) pageSet {
	return pageSet{chunks: make([]*[512]uint64, (pages+pagesPerChunk-1)/pagesPerChunk)}
}

func (s *pageSet) set(i uint64, on bool) {
	c := s.chunks[i/pagesPerChunk]
	if c == nil {
		if !on {
			return
		}
		c = new([512]uint64)
		s.chunks[i/pagesPerChunk] = c
	}
	w, bit := (i%pagesPerChunk)/64, uint64(1)<<(i%64)
	if on {
		c[w] |= bit
	} else {
		c[w] &^= bit
	}
}

func (s *pageSet) has(i uint64) bool {
	c := s.chunks[i/pagesPerChunk]
	return c != nil && c[(i%pagesPerChunk)/64]&(1<<(i%64)) != 0
}

// emit writes b to the output, after a pending section header.
func (c *converter) emit(b []byte) error {
	if c.pending != nil {
		p := c.pending
		c.pending = nil
		if err := c.emit(p); err != nil {
			return err
		}
	}
	if _, err := c.bw.Write(b); err != nil {
		return fmt.Errorf("write stream: %w", err)
	}
	return nil
}

// read returns the next n bytes (at most the buffer's size), in the read
// buffer: they are valid until the next read, so callers copy what they
// keep.
func (c *converter) read(n int) ([]byte, error) {
	b, err := c.br.Peek(n)
	if err != nil {
		return nil, c.readErr(err)
	}
	c.br.Discard(n) // buffered already: no read, b stays valid
	c.pos += int64(n)
	return b, nil
}

func (c *converter) readByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err != nil {
		return 0, c.readErr(err)
	}
	c.pos++
	return b, nil
}

func (c *converter) readU32() (uint32, error) {
	b, err := c.read(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

func (c *converter) readU64() (uint64, error) {
	b, err := c.read(8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

// readString reads a length byte and that many bytes (idstrs).
func (c *converter) readString() (string, error) {
	n, err := c.readByte()
	if err != nil {
		return "", err
	}
	b, err := c.read(int(n))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (c *converter) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: stream ends early", ErrMalformed)
	}
	return fmt.Errorf("read stream: %w", err)
}

type countReader struct {
	r io.Reader
	n int64
}

func (r *countReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}
