package migstream

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// memFile is a Memory in RAM, page by page, that records what was
// written and fails the test on writes outside the size set by Truncate.
type memFile struct {
	t     testing.TB
	size  int64
	pages map[int64][]byte
	sized bool
	zeroW int // pages written that were all zero
}

func (m *memFile) Truncate(n int64) error {
	if m.sized {
		m.t.Errorf("Truncate called twice")
	}
	m.sized, m.size, m.pages = true, n, map[int64][]byte{}
	return nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if !m.sized || off < 0 || off%pageSize != 0 || len(p)%pageSize != 0 || off+int64(len(p)) > m.size {
		m.t.Errorf("WriteAt(%d bytes at %d) outside the pages of a memory file of %d bytes (sized %v)", len(p), off, m.size, m.sized)
		return 0, errors.New("out of range")
	}
	for i := 0; i < len(p); i += pageSize {
		pg := bytes.Clone(p[i : i+pageSize])
		if bytes.Count(pg, []byte{0}) == pageSize {
			m.zeroW++
		}
		m.pages[off+int64(i)] = pg
	}
	return len(p), nil
}

// data is the whole file; for small ones.
func (m *memFile) data() []byte {
	d := make([]byte, m.size)
	for off, pg := range m.pages {
		copy(d[off:], pg)
	}
	return d
}

func pageOf(seed byte) []byte {
	p := make([]byte, pageSize)
	for i := range p {
		p[i] = seed + byte(i%251)
	}
	return p
}

// sample builds a stream with every record kind, as full stream and as
// the stream Convert must produce, and the memory file it must write.
func sample(omit string) []byte {
	b := &streamBuilder{omit: omit}
	b.header("x-ignore-shared")
	blocks := []testBlock{{"ram0", 16 * pageSize, 0}, {"pc.bios", 4 * pageSize, 0xfffc0000}, {"/rom@etc/acpi/tables", 2 * pageSize, 0}}
	b.start(2, blocks, true)
	b.u64(flagEOS)
	b.footer(2)
	// A PART of ram0 and other blocks interleaved.
	b.part(secPart, 2)
	b.page("ram0", 0, pageOf(1))
	b.page("ram0", 1*pageSize, pageOf(2)) // CONTINUE
	b.page("ram0", 2*pageSize, nil)
	b.page("pc.bios", 0, pageOf(3))
	b.page("pc.bios", pageSize, nil)
	b.page("ram0", 3*pageSize, pageOf(4))
	b.page("/rom@etc/acpi/tables", pageSize, pageOf(5))
	b.end(2)
	// A PART of ram0 only: gone from the output.
	b.part(secPart, 2)
	b.page("ram0", 15*pageSize, pageOf(6))
	b.page("ram0", 14*pageSize, nil)
	b.end(2)
	// END: a page sent again (now zero), one changed, a bios page.
	b.part(secEnd, 2)
	b.page("ram0", 1*pageSize, nil)
	b.page("ram0", 3*pageSize, pageOf(7))
	b.page("pc.bios", 3*pageSize, pageOf(8))
	b.end(2)
	b.devices(3)
	return b.buf.Bytes()
}

func sampleMemory() []byte {
	m := make([]byte, 16*pageSize)
	copy(m[0:], pageOf(1))
	copy(m[3*pageSize:], pageOf(7))
	copy(m[15*pageSize:], pageOf(6))
	return m
}

func TestConvertSample(t *testing.T) {
	in, want := sample(""), sample("ram0")
	var out bytes.Buffer
	mem := &memFile{t: t}
	st, err := Convert(bytes.NewReader(in), &out, mem, "ram0")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("output stream differs from the stream without ram0:\n got % x\nwant % x", out.Bytes(), want)
	}
	if !bytes.Equal(mem.data(), sampleMemory()) {
		t.Fatal("memory file differs")
	}
	want2 := Stats{InBytes: int64(len(in)), OutBytes: int64(len(want)), BlockBytes: 16 * pageSize, Pages: 5, ZeroPages: 3, OtherPages: 4, TailBytes: 155}
	if st != want2 {
		t.Errorf("stats = %+v, want %+v", st, want2)
	}
	// Zero pages are holes, except the one page sent as data first.
	if mem.zeroW != 1 {
		t.Errorf("%d all-zero writes, want 1 (page 1, zero after data)", mem.zeroW)
	}
	// Converting the output again changes nothing: no ram0 page is left.
	var again bytes.Buffer
	st2, err := Convert(bytes.NewReader(out.Bytes()), &again, &memFile{t: t}, "ram0")
	if err != nil || !bytes.Equal(again.Bytes(), want) || st2.Pages+st2.ZeroPages != 0 {
		t.Fatalf("second conversion: %+v, %v", st2, err)
	}
}

// Every prefix of a stream is an error, never a success with a partial
// memory file.
func TestConvertTruncated(t *testing.T) {
	in := sample("")
	for n := 0; n < len(in); n++ {
		if n > 600 && n < len(in)-600 && n%97 != 0 {
			continue
		}
		_, err := Convert(bytes.NewReader(in[:n]), io.Discard, &memFile{t: t}, "ram0")
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("stream cut at %d of %d: %v, want ErrMalformed", n, len(in), err)
		}
	}
}

func TestConvertBadStreams(t *testing.T) {
	ign := []string{"x-ignore-shared"}
	blocks := []testBlock{{"ram0", 4 * pageSize, 0}, {"pc.bios", pageSize, 1}}
	build := func(f func(b *streamBuilder)) []byte {
		b := &streamBuilder{}
		f(b)
		return b.buf.Bytes()
	}
	okStart := func(b *streamBuilder) {
		b.header(ign...)
		b.start(2, blocks, true)
		b.u64(flagEOS)
		b.footer(2)
	}
	okEnd := func(b *streamBuilder) {
		b.part(secEnd, 2)
		b.end(2)
		b.devices(3)
	}
	record := func(v uint64, rest ...byte) func(b *streamBuilder) {
		return func(b *streamBuilder) {
			okStart(b)
			b.part(secPart, 2)
			b.u64(v)
			b.buf.Write(rest)
		}
	}
	cases := []struct {
		name   string
		stream []byte
		want   error
		msg    string
	}{
		{"empty", nil, ErrMalformed, "ends early"},
		{"magic", []byte("QEVX\x00\x00\x00\x03"), ErrMalformed, "magic"},
		{"version 2", []byte("QEVM\x00\x00\x00\x02"), ErrUnsupported, "version"},
		{"no configuration", build(func(b *streamBuilder) {
			b.u32(fileMagic)
			b.u32(fileVersion)
			b.start(2, blocks, false)
		}), ErrUnsupported, "configuration"},
		{"unknown subsection", build(func(b *streamBuilder) {
			b.header()
			b.buf.WriteByte(secSubsection)
			b.str("configuration/whatever")
			b.u32(1)
		}), ErrUnsupported, "whatever"},
		{"xbzrle", build(record(flagXBZRLE | flagContinue)), ErrUnsupported, "xbzrle"},
		{"compress", build(record(flagCompress)), ErrUnsupported, "compress"},
		{"multifd flush", build(record(flagMultifdFlush)), ErrUnsupported, "multifd"},
		{"rdma hook", build(record(flagHook)), ErrUnsupported, "RDMA"},
		{"unknown flag", build(record(0x400)), ErrMalformed, "flags"},
		{"full flag", build(record(flagFull)), ErrMalformed, "flags"},
		{"continue without block", build(record(flagPage | flagContinue)), ErrMalformed, "continues no block"},
		{"unknown block", build(record(flagPage, append([]byte{3}, "vga"...)...)), ErrMalformed, "unknown block"},
		{"page outside block", build(record(4*pageSize|flagZero, append([]byte{4}, "ram0"...)...)), ErrMalformed, "outside block"},
		{"second block list", build(record(5*pageSize | flagMemSize)), ErrMalformed, "block list"},
		{"eos with address", build(record(pageSize | flagEOS)), ErrMalformed, "end record"},
		{"command section", build(func(b *streamBuilder) {
			okStart(b)
			b.buf.WriteByte(secCommand)
		}), ErrUnsupported, "command"},
		{"unknown section type", build(func(b *streamBuilder) {
			okStart(b)
			b.buf.WriteByte(0x42)
		}), ErrMalformed, "section type"},
		{"other iterable", build(func(b *streamBuilder) {
			okStart(b)
			b.buf.WriteByte(secStart)
			b.u32(3)
			b.str("block")
			b.u32(0)
			b.u32(1)
		}), ErrUnsupported, `"block"`},
		{"second ram start", build(func(b *streamBuilder) {
			okStart(b)
			b.start(3, blocks, true)
		}), ErrMalformed, "second ram"},
		{"ram section version", build(func(b *streamBuilder) {
			b.header(ign...)
			b.buf.WriteByte(secStart)
			b.u32(2)
			b.str("ram")
			b.u32(0)
			b.u32(5)
		}), ErrUnsupported, "version 5"},
		{"target block missing", build(func(b *streamBuilder) {
			b.header(ign...)
			b.start(2, blocks[1:], true)
			b.u64(flagEOS)
			b.footer(2)
		}), ErrMalformed, `"ram0" not in`},
		{"block list longer than total", build(func(b *streamBuilder) {
			b.header(ign...)
			b.start(2, blocks, true)
			b.buf.Bytes()[len(b.buf.Bytes())-9] = 0xff // pc.bios length low byte
		}), ErrMalformed, "left in the list"},
		{"block list without mr addresses", build(func(b *streamBuilder) {
			b.header(ign...)
			b.start(2, blocks, false)
			b.u64(flagEOS)
			b.footer(2)
			okEnd(b)
		}), ErrMalformed, ""},
		{"bad footer", build(func(b *streamBuilder) {
			b.header(ign...)
			b.start(2, blocks, true)
			b.u64(flagEOS)
			b.footer(7)
		}), ErrMalformed, "footer"},
		{"part of another section", build(func(b *streamBuilder) {
			okStart(b)
			b.part(secEnd, 9)
		}), ErrMalformed, "not the ram section"},
		{"part after end", build(func(b *streamBuilder) {
			okStart(b)
			b.part(secEnd, 2)
			b.end(2)
			b.part(secPart, 2)
			b.end(2)
		}), ErrMalformed, "after its end"},
		{"devices before ram end", build(func(b *streamBuilder) {
			okStart(b)
			b.devices(3)
		}), ErrMalformed, "before the end of the ram"},
		{"description one byte short", build(func(b *streamBuilder) {
			okStart(b)
			okEnd(b)
			b.buf.Truncate(b.buf.Len() - 1)
		}), ErrMalformed, "ends early"},
		{"trailing garbage", build(func(b *streamBuilder) {
			okStart(b)
			okEnd(b)
			b.buf.WriteString("x")
		}), ErrMalformed, "ends early"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Convert(bytes.NewReader(tc.stream), io.Discard, &memFile{t: t}, "ram0")
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	// And the well-formed base of those cases converts.
	if _, err := Convert(bytes.NewReader(build(func(b *streamBuilder) { okStart(b); okEnd(b) })), io.Discard, &memFile{t: t}, "ram0"); err != nil {
		t.Fatalf("well-formed base: %v", err)
	}
}

// Garbled bytes anywhere in the framing give an error or a conversion
// whose output is again a valid stream; never a panic. (Bytes inside page
// data cannot be told from good ones: the stream has no checksum.)
func TestConvertGarbled(t *testing.T) {
	in := sample("")
	r := rand.New(rand.NewPCG(1, 2))
	errs := 0
	for i := 0; i < 3000; i++ {
		g := bytes.Clone(in)
		for range 1 + r.IntN(3) {
			g[r.IntN(len(g))] ^= byte(1 + r.IntN(255))
		}
		var out bytes.Buffer
		if _, err := Convert(bytes.NewReader(g), &out, &memFile{t: t}, "ram0"); err != nil {
			errs++
			continue
		}
		if _, err := Convert(bytes.NewReader(out.Bytes()), io.Discard, &memFile{t: t}, "ram0"); err != nil {
			t.Fatalf("garbled stream converted, but its output does not: %v", err)
		}
	}
	t.Logf("%d of 3000 garbled streams refused", errs)
}

func FuzzConvert(f *testing.F) {
	f.Add(sample(""))
	f.Add(sample("ram0"))
	f.Add(sample("")[:300])
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		mem := &memFile{t: t}
		st, err := Convert(bytes.NewReader(in), &out, mem, "ram0")
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps neither sentinel: %v", err)
			}
			return
		}
		if st.BlockBytes != mem.size || st.OutBytes != int64(out.Len()) || st.InBytes != int64(len(in)) {
			t.Fatalf("stats %+v disagree with %d bytes in, %d out, memory %d", st, len(in), out.Len(), mem.size)
		}
		var again bytes.Buffer
		st2, err := Convert(bytes.NewReader(out.Bytes()), &again, &memFile{t: t}, "ram0")
		if err != nil || st2.Pages+st2.ZeroPages != 0 || !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatalf("output does not convert to itself: %+v, %v", st2, err)
		}
	})
}
