package migstream

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// streamBuilder writes synthetic QEMU 7.2 migration streams for the unit
// tests, record by record, as ram.c and savevm.c do. With omit set, the
// records of that block are left out (and PART sections holding only
// them), which is what Convert must turn the full stream into.
type streamBuilder struct {
	buf     bytes.Buffer
	omit    string
	last    string // block of the last page written (CONTINUE)
	section []byte // PART section waiting for a kept record
}

func (b *streamBuilder) u32(v uint32) { binary.Write(&b.buf, binary.BigEndian, v) }
func (b *streamBuilder) u64(v uint64) { binary.Write(&b.buf, binary.BigEndian, v) }
func (b *streamBuilder) str(s string) { b.buf.WriteByte(byte(len(s))); b.buf.WriteString(s) }

func (b *streamBuilder) header(caps ...string) {
	b.u32(fileMagic)
	b.u32(fileVersion)
	b.buf.WriteByte(secConfiguration)
	b.u32(10)
	b.buf.WriteString("pc-q35-7.2")
	if len(caps) > 0 {
		b.buf.WriteByte(secSubsection)
		b.str("configuration/capabilities")
		b.u32(1)
		b.u32(uint32(len(caps)))
		for _, c := range caps {
			b.str(c)
		}
	}
}

type testBlock struct {
	id     string
	length uint64
	mr     uint64
}

func (b *streamBuilder) start(id uint32, blocks []testBlock, ignoreShared bool) {
	b.buf.WriteByte(secStart)
	b.u32(id)
	b.str("ram")
	b.u32(0)
	b.u32(ramSectionVersion)
	var total uint64
	for _, bl := range blocks {
		total += bl.length
	}
	b.u64(total | flagMemSize)
	for _, bl := range blocks {
		b.str(bl.id)
		b.u64(bl.length)
		if ignoreShared {
			b.u64(bl.mr)
		}
	}
}

// part opens a PART (or END) section; with omit set, a PART is written
// only if a kept record follows.
func (b *streamBuilder) part(t byte, id uint32) {
	h := binary.BigEndian.AppendUint32([]byte{t}, id)
	if t == secPart && b.omit != "" {
		b.section = h
		return
	}
	b.buf.Write(h)
}

func (b *streamBuilder) flushSection() {
	if b.section != nil {
		b.buf.Write(b.section)
		b.section = nil
	}
}

// page writes a data page (data != nil) or a zero page.
func (b *streamBuilder) page(block string, addr uint64, data []byte) {
	if block == b.omit {
		b.last = block // as the source wrote it: the next record names its block
		return
	}
	b.flushSection()
	flags := uint64(flagZero)
	if data != nil {
		flags = flagPage
	}
	if block == b.last {
		flags |= flagContinue
	}
	b.u64(addr | flags)
	if block != b.last {
		b.str(block)
	}
	b.last = block
	if data != nil {
		b.buf.Write(data)
	} else {
		b.buf.WriteByte(0)
	}
}

// end closes a RAM section: EOS and footer (both dropped with the
// section if nothing was kept in it).
func (b *streamBuilder) end(id uint32) {
	if b.section != nil {
		b.section = nil
		return
	}
	b.u64(flagEOS)
	b.footer(id)
}

func (b *streamBuilder) footer(id uint32) {
	b.buf.WriteByte(secFooter)
	b.u32(id)
}

// devices writes non-iterable sections, EOF and the vmstate description.
func (b *streamBuilder) devices(first uint32) {
	for i, name := range []string{"timer", "cpu_common", "apic"} {
		id := first + uint32(i)
		b.buf.WriteByte(secFull)
		b.u32(id)
		b.str(name)
		b.u32(0)
		b.u32(1)
		// Device bytes that look like framing, to tempt a parser.
		b.buf.Write([]byte{0x7e, 0, 0, 0, 0, 0x00, 0x06, 0, 0, 0, 4, 0x10, byte(i)})
		b.footer(id)
	}
	b.buf.WriteByte(secEOF)
	desc := fmt.Sprintf(`{"page_size": %d, "devices": []}`, pageSize)
	b.buf.WriteByte(secVMDescription)
	b.u32(uint32(len(desc)))
	b.buf.WriteString(desc)
}
