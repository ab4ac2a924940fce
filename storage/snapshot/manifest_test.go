package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// validManifest is a small manifest with every kind of chunk: stored
// compressed, stored uncompressed, codec unknown, a hole, a short last
// chunk.
func validManifest() *Manifest {
	id := func(s string) string { return chunk.Sum([]byte(s)).String() }
	const cs = chunk.MinSize
	m := &Manifest{
		Schema: SchemaVersion, ID: "snap-1", SourceInstance: "inst-1", Kind: "standby",
		Created:     time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		VM:          json.RawMessage(`{"memory_mib":64}`),
		Hypervisor:  "qemu 7.2.0",
		Compression: Compression{Algorithm: "zstd", Level: 1},
		Files: []File{
			{Name: "memory", Size: 3*cs + 100, ChunkSize: cs, Chunks: []Chunk{
				{Index: 0, ID: id("a"), RawLen: cs, StoredLen: 1000, Codec: "zstd"},
				{Index: 1, Hole: true, RawLen: cs},
				{Index: 2, ID: id("b"), RawLen: cs, StoredLen: cs + chunk.HeaderSize, Codec: "none"},
				{Index: 3, ID: id("c"), RawLen: 100, StoredLen: 50},
			}},
			{Name: "device-state", Size: 0, ChunkSize: cs, Chunks: []Chunk{}},
		},
	}
	m.Totals = totals(m.Files)
	m.Totals.NewStored = 1000
	m.Labels = map[string]string{"hangar.role": "named", "hangar.snapshot.name": "before upgrade ✓"}
	m.Committed = time.Date(2025, 1, 2, 3, 4, 9, 0, time.UTC)
	return m
}

func TestManifestRoundTrip(t *testing.T) {
	m := validManifest()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := back.Marshal()
	if err != nil || string(b2) != string(b) {
		t.Fatalf("round trip changed the manifest (%v):\n%s\n%s", err, b, b2)
	}
	if !sameContent(m, back) {
		t.Fatal("sameContent false after a round trip")
	}
}

// TestManifestFixtureV1 reads a manifest as schema 1 wrote it, so that a
// change that breaks old snapshots fails here.
func TestManifestFixtureV1(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "manifest-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "fixture-v1" || len(m.Files) != 2 || m.Totals.Holes != 1 || m.Files[0].Chunks[0].ChunkID().IsZero() {
		t.Fatalf("fixture parsed to %+v", m)
	}
	// The optional fields added later are absent from it, and stay so.
	if m.Labels != nil || !m.Committed.IsZero() {
		t.Fatalf("fixture has labels %v, committed %v", m.Labels, m.Committed)
	}
	out, err := m.Marshal()
	if err != nil || strings.Contains(string(out), `"labels"`) || strings.Contains(string(out), `"committed"`) {
		t.Fatalf("re-encoded fixture (%v):\n%s", err, out)
	}
}

func TestValidateLabels(t *testing.T) {
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		ok     bool
	}{
		{"none", nil, true},
		{"typical", map[string]string{"hangar.role": "standby", "hangar.instance.name": "web 1", "a/b_c-d": ""}, true},
		{"longest value", map[string]string{"k": strings.Repeat("é", MaxLabelValueLen/2)}, true},
		{"upper-case key", map[string]string{"Role": "x"}, false},
		{"empty key", map[string]string{"": "x"}, false},
		{"key starting with a dot", map[string]string{".role": "x"}, false},
		{"key too long", map[string]string{strings.Repeat("k", 64): "x"}, false},
		{"key with a space", map[string]string{"a b": "x"}, false},
		{"value too long", map[string]string{"k": strings.Repeat("v", MaxLabelValueLen+1)}, false},
		{"control character", map[string]string{"k": "a\nb"}, false},
		{"invalid UTF-8", map[string]string{"k": "\xff"}, false},
		{"too many", many, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateLabels(tc.labels)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateLabels = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, storage.ErrInvalidKey) {
				t.Fatalf("%v does not wrap storage.ErrInvalidKey", err)
			}
			m := validManifest()
			m.Labels = tc.labels
			if err := m.Validate(); (err == nil) != tc.ok || (err != nil && !errors.Is(err, storage.ErrCorrupt)) {
				t.Fatalf("Validate = %v, want ok %v (or ErrCorrupt)", err, tc.ok)
			}
		})
	}
}

func TestParseManifestRejects(t *testing.T) {
	edit := func(f func(m *Manifest)) []byte {
		m := validManifest()
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good, _ := json.Marshal(validManifest())
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, storage.ErrCorrupt},
		{"not json", []byte("{"), storage.ErrCorrupt},
		{"array", []byte("[]"), storage.ErrCorrupt},
		{"no schema", []byte(`{"id":"x"}`), storage.ErrCorrupt},
		{"schema 0", edit(func(m *Manifest) { m.Schema = 0 }), storage.ErrCorrupt},
		{"schema 2", edit(func(m *Manifest) { m.Schema = 2 }), ErrUnsupportedSchema},
		{"schema 2 with new fields", []byte(`{"schema":2,"future":true}`), ErrUnsupportedSchema},
		{"unknown field", []byte(strings.Replace(string(good), `"schema":1`, `"schema":1,"extra":1`, 1)), storage.ErrCorrupt},
		{"trailing data", append(append([]byte{}, good...), []byte(` {}`)...), storage.ErrCorrupt},
		{"bad id", edit(func(m *Manifest) { m.ID = "../x" }), storage.ErrCorrupt},
		{"no created", edit(func(m *Manifest) { m.Created = time.Time{} }), storage.ErrCorrupt},
		{"bad algorithm", edit(func(m *Manifest) { m.Compression.Algorithm = "gzip" }), storage.ErrCorrupt},
		{"upper-case algorithm", edit(func(m *Manifest) { m.Compression.Algorithm = "ZSTD" }), storage.ErrCorrupt},
		{"bad level", edit(func(m *Manifest) { m.Compression.Level = 42 }), storage.ErrCorrupt},
		{"no files", edit(func(m *Manifest) { m.Files = nil; m.Totals = Totals{} }), storage.ErrCorrupt},
		{"path file name", edit(func(m *Manifest) { m.Files[0].Name = "../etc/passwd" }), storage.ErrCorrupt},
		{"dot file name", edit(func(m *Manifest) { m.Files[0].Name = ".memory" }), storage.ErrCorrupt},
		{"duplicate file", edit(func(m *Manifest) { m.Files[1].Name = "memory" }), storage.ErrCorrupt},
		{"bad chunk size", edit(func(m *Manifest) { m.Files[0].ChunkSize = 3 << 20 }), storage.ErrCorrupt},
		{"negative size", edit(func(m *Manifest) { m.Files[1].Size = -1 }), storage.ErrCorrupt},
		{"too few chunks", edit(func(m *Manifest) { m.Files[0].Chunks = m.Files[0].Chunks[:3] }), storage.ErrCorrupt},
		{"size too big", edit(func(m *Manifest) { m.Files[0].Size += chunk.MinSize }), storage.ErrCorrupt},
		{"index gap", edit(func(m *Manifest) { m.Files[0].Chunks[2].Index = 5 }), storage.ErrCorrupt},
		{"raw length", edit(func(m *Manifest) { m.Files[0].Chunks[3].RawLen = 99 }), storage.ErrCorrupt},
		{"bad chunk id", edit(func(m *Manifest) { m.Files[0].Chunks[0].ID = "zz" }), storage.ErrCorrupt},
		{"missing chunk id", edit(func(m *Manifest) { m.Files[0].Chunks[0].ID = "" }), storage.ErrCorrupt},
		{"hole with id", edit(func(m *Manifest) { m.Files[0].Chunks[1].ID = m.Files[0].Chunks[0].ID }), storage.ErrCorrupt},
		{"stored too long", edit(func(m *Manifest) { m.Files[0].Chunks[3].StoredLen = 113 }), storage.ErrCorrupt},
		{"stored too short", edit(func(m *Manifest) { m.Files[0].Chunks[3].StoredLen = 11 }), storage.ErrCorrupt},
		{"none not raw size", edit(func(m *Manifest) { m.Files[0].Chunks[2].StoredLen = 1000 }), storage.ErrCorrupt},
		{"zstd not smaller", edit(func(m *Manifest) { m.Files[0].Chunks[3].Codec = "zstd"; m.Files[0].Chunks[3].StoredLen = 112 }), storage.ErrCorrupt},
		{"unknown codec", edit(func(m *Manifest) { m.Files[0].Chunks[0].Codec = "brotli" }), storage.ErrCorrupt},
		{"totals raw", edit(func(m *Manifest) { m.Totals.Raw++ }), storage.ErrCorrupt},
		{"totals holes", edit(func(m *Manifest) { m.Totals.Holes = 0 }), storage.ErrCorrupt},
		{"new stored > compressed", edit(func(m *Manifest) { m.Totals.NewStored = m.Totals.Compressed + 1 }), storage.ErrCorrupt},
		{"too large", make([]byte, MaxManifestSize+1), storage.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest(tc.in)
			if err == nil {
				t.Fatalf("accepted: %+v", m)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want == ErrUnsupportedSchema && errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("unsupported schema reported as corrupt: %v", err)
			}
		})
	}
}

// TestValidateReportsSeveral: one error lists every problem (up to a bound).
func TestValidateReportsSeveral(t *testing.T) {
	m := validManifest()
	m.ID = "BAD"
	m.Compression.Algorithm = "gzip"
	m.Files[0].Name = "a/b"
	err := m.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"snapshot id", "gzip", "a/b"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}

func TestValidateNames(t *testing.T) {
	for _, ok := range []string{"a", "snap-1", "0abc", strings.Repeat("a", 63)} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("ValidateID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "A", "a_b", "a/b", "..", strings.Repeat("a", 64)} {
		if err := ValidateID(bad); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("ValidateID(%q) = %v", bad, err)
		}
	}
	for _, ok := range []string{"memory", "device-state", "config.json", "disk_0.qcow2"} {
		if err := ValidateFileName(ok); err != nil {
			t.Errorf("ValidateFileName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".memory", "-x", "a/b", "a b", strings.Repeat("a", 129)} {
		if err := ValidateFileName(bad); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("ValidateFileName(%q) = %v", bad, err)
		}
	}
}

// FuzzParseManifest: ParseManifest never panics, and whatever it accepts
// marshals and parses back to the same content.
func FuzzParseManifest(f *testing.F) {
	good, _ := validManifest().Marshal()
	f.Add(good)
	if b, err := os.ReadFile(filepath.Join("testdata", "manifest-v1.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"schema":1}`))
	f.Add([]byte(`{"schema":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if !errors.Is(err, storage.ErrCorrupt) && !errors.Is(err, ErrUnsupportedSchema) {
				t.Fatalf("error matches neither ErrCorrupt nor ErrUnsupportedSchema: %v", err)
			}
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted manifest does not marshal: %v", err)
		}
		back, err := ParseManifest(out)
		if err != nil || !sameContent(m, back) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}
