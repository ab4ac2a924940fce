package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// SchemaVersion is the manifest schema this code writes. Readers accept
// every version up to it and refuse newer ones.
const SchemaVersion = 1

// MaxManifestSize bounds how much of a manifest object is read: a 64 GiB
// guest in 1 MiB chunks needs about 10 MiB of JSON.
const MaxManifestSize = 64 << 20

// ErrUnsupportedSchema is returned for a manifest written by a newer hangar.
// It does not match storage.ErrCorrupt: the manifest may be fine, this build
// just cannot read it.
var ErrUnsupportedSchema = errors.New("unsupported manifest schema version")

var (
	idPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// ValidateID checks a snapshot id: 1 to 63 lower-case letters, digits and
// dashes, not starting with a dash. Ids come from outside (the API, the
// bucket listing), so every path and key built from one is built after this.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: snapshot id %q (want 1-63 of a-z, 0-9, '-', not starting with '-')", storage.ErrInvalidKey, id)
	}
	return nil
}

// ValidateFileName checks the name of a snapshot file: 1 to 128 letters,
// digits, '.', '_' and '-', not starting with '.', '_' or '-'. Download
// joins it to a directory, so it can never be a path, and it can never
// collide with Download's temporary files, which start with '.'.
func ValidateFileName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: snapshot file name %q (want 1-128 of A-Z, a-z, 0-9, '.', '_', '-', starting with a letter or digit)", storage.ErrInvalidKey, name)
	}
	return nil
}

// ManifestKey is the object key of a snapshot's manifest, its commit point.
func ManifestKey(id string) string { return "snapshots/" + id + "/manifest.json" }

// Manifest describes one committed snapshot: which files it holds and, for
// each, the chunks to fetch and where holes are. It is written last, with a
// conditional create, so a snapshot whose manifest exists is complete.
// The schema is specified in docs/format.md.
type Manifest struct {
	Schema         int             `json:"schema"`
	ID             string          `json:"id"`
	SourceInstance string          `json:"source_instance,omitempty"`
	Kind           string          `json:"kind,omitempty"`
	Created        time.Time       `json:"created"`
	VM             json.RawMessage `json:"vm,omitempty"`         // VM config as the host recorded it
	Hypervisor     string          `json:"hypervisor,omitempty"` // e.g. "qemu 7.2.0"
	ImageDigest    string          `json:"image_digest,omitempty"`
	Compression    Compression     `json:"compression"`
	Files          []File          `json:"files"`
	Totals         Totals          `json:"totals"`
	// Labels are the writer's own key/value pairs (ValidateLabels), for
	// what the bucket must say about a snapshot so that a catalog can be
	// rebuilt from it alone (the host records a snapshot's role and name,
	// say). Storage gives them no meaning. Optional: absent in manifests
	// written before it existed.
	Labels map[string]string `json:"labels,omitempty"`
	// Committed is when the upload committed the manifest. Optional:
	// absent in manifests written before it existed (Created is the best
	// answer for those).
	Committed time.Time `json:"committed,omitzero"`
}

// Bounds of Manifest.Labels, checked by ValidateLabels.
const (
	MaxLabels        = 32
	MaxLabelValueLen = 1024
)

var labelKeyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,62}$`)

// ValidateLabels checks a manifest's labels: at most MaxLabels, each key
// 1 to 63 of a-z, 0-9, '.', '_', '/', '-' starting with a letter or
// digit, each value valid UTF-8 without control characters and at most
// MaxLabelValueLen bytes. It reports every problem at once, wrapping
// storage.ErrInvalidKey.
func ValidateLabels(labels map[string]string) error {
	var errs []error
	if len(labels) > MaxLabels {
		errs = append(errs, fmt.Errorf("%d labels, at most %d", len(labels), MaxLabels))
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same input reports the same error
	for _, k := range keys {
		v := labels[k]
		if !labelKeyPattern.MatchString(k) {
			errs = append(errs, fmt.Errorf("label key %q (want 1-63 of a-z, 0-9, '.', '_', '/', '-', starting with a letter or digit)", k))
		}
		if len(v) > MaxLabelValueLen {
			errs = append(errs, fmt.Errorf("label %s: value of %d bytes, at most %d", k, len(v), MaxLabelValueLen))
		} else if !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
			errs = append(errs, fmt.Errorf("label %s: value is not valid UTF-8 or holds a control character", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", storage.ErrInvalidKey, err)
	}
	return nil
}

// Compression records the policy that was actually applied.
type Compression struct {
	Algorithm string `json:"algorithm"`
	Level     int    `json:"level"`
}

// Setting returns the recorded compression as a compression.Setting.
func (c Compression) Setting() compression.Setting {
	return compression.Setting{Algorithm: compression.Algorithm(c.Algorithm), Level: c.Level}
}

// File is one named file of a snapshot (memory, device-state, ...).
type File struct {
	Name      string  `json:"name"`
	Size      int64   `json:"size"`
	ChunkSize int     `json:"chunk_size"`
	Chunks    []Chunk `json:"chunks"`
}

// Chunk is one fixed-size piece of a file. A hole has no id and is never
// stored: it reads as RawLen zero bytes.
//
// StoredLen is the size of the stored object and Codec the codec of its
// payload ("none", "zstd", "lz4"). Codec is empty when the uploader did not
// write the chunk and did not learn its codec (it was already stored, found
// through a listing or a refused conditional create); the chunk's header
// always says.
type Chunk struct {
	Index     int    `json:"index"`
	ID        string `json:"id,omitempty"`
	Hole      bool   `json:"hole,omitempty"`
	RawLen    int    `json:"raw_len"`
	StoredLen int    `json:"stored_len,omitempty"`
	Codec     string `json:"codec,omitempty"`
}

// ChunkID returns the parsed id of a non-hole chunk. It is valid to call
// only on a validated manifest (ParseManifest, Validate); otherwise a bad id
// yields the zero ID.
func (c Chunk) ChunkID() chunk.ID {
	id, _ := chunk.ParseID(c.ID)
	return id
}

// Totals sum a snapshot's sizes in bytes. Raw counts every byte of every
// file, NonZero the bytes outside holes, Compressed the stored size of all
// non-hole chunks, NewStored the part of Compressed that this snapshot's
// upload actually wrote (the rest was already in the store). Chunks counts
// non-hole chunks (a chunk referenced twice counts twice), Holes the holes.
type Totals struct {
	Raw        int64 `json:"raw"`
	NonZero    int64 `json:"nonzero"`
	Compressed int64 `json:"compressed"`
	NewStored  int64 `json:"new_stored"`
	Chunks     int   `json:"chunks"`
	Holes      int   `json:"holes"`
}

// corrupt wraps a manifest problem so that it matches storage.ErrCorrupt.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: manifest: %s", storage.ErrCorrupt, fmt.Sprintf(format, args...))
}

// ParseManifest decodes and validates a manifest. It is strict: unknown
// fields, trailing data, a schema newer than SchemaVersion
// (ErrUnsupportedSchema) and every inconsistency Validate finds are errors.
// Every error except ErrUnsupportedSchema matches storage.ErrCorrupt.
// It never panics, whatever b holds.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, corrupt("%d bytes, more than the maximum %d", len(b), MaxManifestSize)
	}
	// The schema version first, leniently: a newer schema may have fields
	// this build does not know, and the right answer then is "too new",
	// not "unknown field".
	var head struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, corrupt("%v", err)
	}
	switch {
	case head.Schema == nil:
		return nil, corrupt("no schema version")
	case *head.Schema > SchemaVersion:
		return nil, fmt.Errorf("%w: manifest schema %d, this build reads up to %d", ErrUnsupportedSchema, *head.Schema, SchemaVersion)
	case *head.Schema < 1:
		return nil, corrupt("schema version %d", *head.Schema)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, corrupt("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, corrupt("trailing data after the manifest object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Marshal validates m and returns its JSON form, the bytes committed to
// the store.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.ID, err)
	}
	return append(b, '\n'), nil
}

// maxProblems bounds how many problems Validate lists: a manifest with a
// million bad chunks needs no million-line error.
const maxProblems = 20

// Validate checks everything a reader relies on: the schema and snapshot
// id, the compression setting, file names (unique, safe as file names),
// every file's chunk size and chunk list (indexes 0..n-1 in order, the
// right count for the file size, each raw length what the chunk size and
// file size say, ids that parse, stored lengths a stored chunk can have),
// and the totals. It reports up to 20 problems at once, wrapped in
// storage.ErrCorrupt.
func (m *Manifest) Validate() error {
	var problems []string
	add := func(format string, args ...any) bool {
		if len(problems) < maxProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		return len(problems) < maxProblems
	}
	if m.Schema < 1 || m.Schema > SchemaVersion {
		add("schema %d (this build reads 1..%d)", m.Schema, SchemaVersion)
	}
	if err := ValidateID(m.ID); err != nil {
		add("%v", err)
	}
	if m.Created.IsZero() {
		add("no created time")
	}
	if len(m.VM) > 0 && !json.Valid(m.VM) {
		add("vm is not valid JSON")
	}
	if err := ValidateLabels(m.Labels); err != nil {
		add("%v", err)
	}
	if alg, err := compression.ParseAlgorithm(m.Compression.Algorithm); err != nil || string(alg) != m.Compression.Algorithm {
		add("compression algorithm %q (want zstd, lz4 or none, lower case)", m.Compression.Algorithm)
	} else if lo, hi := compression.LevelRange(alg); m.Compression.Level < lo || m.Compression.Level > hi {
		add("compression level %d for %s (want %d..%d)", m.Compression.Level, alg, lo, hi)
	}
	if len(m.Files) == 0 {
		add("no files")
	}
	var want Totals
	names := make(map[string]bool, len(m.Files))
	for fi, f := range m.Files {
		if err := ValidateFileName(f.Name); err != nil {
			add("file %d: %v", fi, err)
		} else if names[f.Name] {
			add("file %d: name %q used twice", fi, f.Name)
		}
		names[f.Name] = true
		if !validateFile(f, add) {
			break
		}
		want.Raw += f.Size
		for _, c := range f.Chunks {
			if c.Hole {
				want.Holes++
				continue
			}
			want.Chunks++
			want.NonZero += int64(c.RawLen)
			want.Compressed += int64(c.StoredLen)
		}
	}
	if len(problems) == 0 {
		t := m.Totals
		if t.Raw != want.Raw || t.NonZero != want.NonZero || t.Compressed != want.Compressed || t.Chunks != want.Chunks || t.Holes != want.Holes {
			add("totals %+v do not match the files (raw %d, nonzero %d, compressed %d, chunks %d, holes %d)",
				t, want.Raw, want.NonZero, want.Compressed, want.Chunks, want.Holes)
		}
		if t.NewStored < 0 || t.NewStored > t.Compressed {
			add("totals: new_stored %d outside 0..compressed (%d)", t.NewStored, t.Compressed)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	msg := problems[0]
	for _, p := range problems[1:] {
		msg += "; " + p
	}
	return corrupt("snapshot %q: %s", m.ID, msg)
}

// validateFile checks one file's chunk list. It returns false once add has
// been told to stop.
func validateFile(f File, add func(string, ...any) bool) bool {
	if err := chunk.ValidateSize(f.ChunkSize); err != nil {
		return add("file %q: %v", f.Name, err)
	}
	if f.Size < 0 {
		return add("file %q: negative size %d", f.Name, f.Size)
	}
	cs := int64(f.ChunkSize)
	n := f.Size / cs
	if f.Size%cs != 0 {
		n++
	}
	if int64(len(f.Chunks)) != n {
		return add("file %q: %d chunks, a %d-byte file in %d-byte chunks has %d", f.Name, len(f.Chunks), f.Size, cs, n)
	}
	for i, c := range f.Chunks {
		ok := true
		rawLen := int(min(cs, f.Size-int64(i)*cs))
		switch {
		case c.Index != i:
			ok = add("file %q: chunk %d has index %d", f.Name, i, c.Index)
		case c.RawLen != rawLen:
			ok = add("file %q: chunk %d raw length %d, want %d", f.Name, i, c.RawLen, rawLen)
		case c.Hole:
			if c.ID != "" || c.StoredLen != 0 || c.Codec != "" {
				ok = add("file %q: hole %d has an id, stored length or codec", f.Name, i)
			}
		default:
			ok = validateChunk(f.Name, c, add)
		}
		if !ok {
			return false
		}
	}
	return true
}

// validateChunk checks a non-hole chunk's id, codec and stored length
// against the chunk format's rules (HeaderSize + raw bytes when stored
// uncompressed, shorter when compressed).
func validateChunk(file string, c Chunk, add func(string, ...any) bool) bool {
	if _, err := chunk.ParseID(c.ID); err != nil {
		return add("file %q: chunk %d: %v", file, c.Index, err)
	}
	maxStored := chunk.HeaderSize + c.RawLen
	if c.StoredLen < chunk.HeaderSize || c.StoredLen > maxStored {
		return add("file %q: chunk %d stored length %d outside %d..%d", file, c.Index, c.StoredLen, chunk.HeaderSize, maxStored)
	}
	switch c.Codec {
	case "":
	case string(compression.None):
		if c.StoredLen != maxStored {
			return add("file %q: chunk %d stored uncompressed in %d bytes, want %d", file, c.Index, c.StoredLen, maxStored)
		}
	case string(compression.Zstd), string(compression.LZ4):
		if c.StoredLen >= maxStored {
			return add("file %q: chunk %d compressed to %d bytes, not less than %d", file, c.Index, c.StoredLen, maxStored)
		}
	default:
		return add("file %q: chunk %d codec %q", file, c.Index, c.Codec)
	}
	return true
}

// sameContent reports whether a and b hold the same files with the same
// bytes: names, sizes, chunk sizes, holes and chunk ids. It is how Upload
// recognises its own earlier commit.
func sameContent(a, b *Manifest) bool {
	if len(a.Files) != len(b.Files) {
		return false
	}
	for i := range a.Files {
		fa, fb := a.Files[i], b.Files[i]
		if fa.Name != fb.Name || fa.Size != fb.Size || fa.ChunkSize != fb.ChunkSize || len(fa.Chunks) != len(fb.Chunks) {
			return false
		}
		for j := range fa.Chunks {
			if fa.Chunks[j].Hole != fb.Chunks[j].Hole || fa.Chunks[j].ID != fb.Chunks[j].ID {
				return false
			}
		}
	}
	return true
}
