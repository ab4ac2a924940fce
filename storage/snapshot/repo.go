package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/singleflight"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// Config configures a Repo. The zero value is usable: every zero field has
// a default (withDefaults is the one place they live).
type Config struct {
	// Logger receives the repo's logs; nil means slog.Default().
	Logger *slog.Logger
	// Meter records the pipelines' metrics; nil records nothing.
	Meter metric.Meter
	// LockRefresh is how often a running upload or GC rewrites its lock
	// (default 1 minute).
	LockRefresh time.Duration
	// LockStale is how old a lock may get without a refresh before others
	// ignore it as left by a crashed process (default 10 minutes). It must
	// be well above LockRefresh, and above the clock skew between hosts and
	// the store: lock age is the store's modification time against the
	// local clock.
	LockStale time.Duration
	// LockPoll is how often an upload that found a GC running checks
	// whether it has finished (default 5 seconds).
	LockPoll time.Duration
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LockRefresh == 0 {
		c.LockRefresh = time.Minute
	}
	if c.LockStale == 0 {
		c.LockStale = 10 * time.Minute
	}
	if c.LockPoll == 0 {
		c.LockPoll = 5 * time.Second
	}
	return c
}

// Validate reports every problem with c (after defaults) at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.LockRefresh < 0 {
		errs = append(errs, fmt.Errorf("LockRefresh: %v is negative", c.LockRefresh))
	}
	if c.LockPoll < 0 {
		errs = append(errs, fmt.Errorf("LockPoll: %v is negative", c.LockPoll))
	}
	if c.LockStale < 2*c.LockRefresh {
		errs = append(errs, fmt.Errorf("LockStale: %v must be at least twice LockRefresh (%v), or a live lock looks stale", c.LockStale, c.LockRefresh))
	}
	return errors.Join(errs...)
}

// Repo is the content-addressed chunk store and snapshot catalog on top of
// one storage.Store (see the package documentation for the key layout and
// the protocols). It is safe for concurrent use; one Repo per store per
// process is the intended use, so that the index and the download
// de-duplication are shared.
type Repo struct {
	store storage.Store
	cfg   Config
	log   *slog.Logger
	index *index
	met   *instruments
	// fetches makes concurrent downloads of one chunk (forks of one
	// snapshot on one host) fetch it once.
	fetches singleflight.Group
}

// New returns a Repo over store.
func New(store storage.Store, cfg Config) (*Repo, error) {
	if store == nil {
		return nil, errors.New("snapshot: nil store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("snapshot config: %w", err)
	}
	cfg = cfg.withDefaults()
	met, err := newInstruments(cfg.Meter)
	if err != nil {
		return nil, err
	}
	return &Repo{
		store: store,
		cfg:   cfg,
		log:   cfg.Logger.With("component", "snapshot"),
		index: newIndex(),
		met:   met,
	}, nil
}

// ChunkCache is the host's cache of stored chunks, as the pipelines use it
// (storage/cache implements it). Get returns a chunk's stored form or an
// error wrapping storage.ErrNotFound; the bytes may be corrupt, and the
// caller verifies them. Put stores a chunk's stored form (the caller has
// verified it or just encoded it). Remove drops an entry found corrupt.
// Implementations must be safe for concurrent use. A nil ChunkCache in the
// options means no cache.
type ChunkCache interface {
	Get(id chunk.ID) ([]byte, error)
	Put(id chunk.ID, stored []byte) error
	Remove(id chunk.ID) error
}

// LoadIndex lists every stored chunk once and remembers the ids, so that
// later uploads skip them without asking the store: one LIST request per
// 1000 chunks instead of a request per chunk. Call it once after New on a
// host that uploads, and again whenever convenient; uploads also keep the
// index up to date, and drop it when a garbage collection ran since it was
// loaded (the GC epoch, see gc.go).
func (r *Repo) LoadIndex(ctx context.Context) error {
	epoch, err := r.readEpoch(ctx)
	if err != nil {
		return err
	}
	found := make(map[chunk.ID]entry)
	err = r.store.List(ctx, "chunks/", func(oi storage.ObjectInfo) error {
		id, ok := parseChunkKey(oi.Key)
		if ok && oi.Size >= chunk.HeaderSize && oi.Size <= chunk.HeaderSize+chunk.MaxSize {
			found[id] = entry{storedLen: int32(oi.Size), codec: codecUnknown}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load chunk index: %w", err)
	}
	r.index.load(epoch, found)
	r.log.Debug("chunk index loaded", "chunks", len(found))
	return nil
}

// IndexLen returns how many chunk ids the index knows to be stored.
func (r *Repo) IndexLen() int { return r.index.len() }

// parseChunkKey returns the id of a chunk key "chunks/<2 hex>/<64 hex>";
// ok is false for any other key, which the repo never touches.
func parseChunkKey(key string) (chunk.ID, bool) {
	rest, ok := strings.CutPrefix(key, "chunks/")
	if !ok || len(rest) != 3+64 || rest[2] != '/' {
		return chunk.ID{}, false
	}
	id, err := chunk.ParseID(rest[3:])
	if err != nil || rest[:2] != rest[3:5] {
		return chunk.ID{}, false
	}
	return id, true
}

// getObject reads a whole object of at most limit bytes.
func (r *Repo) getObject(ctx context.Context, key string, limit int64) ([]byte, error) {
	rc, err := r.store.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", storage.ErrCorrupt, key, limit)
	}
	return b, nil
}

// Manifest reads and validates the manifest of snapshot id. A snapshot
// that does not exist (or is not committed yet) is storage.ErrNotFound.
func (r *Repo) Manifest(ctx context.Context, id string) (*Manifest, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	b, err := r.getObject(ctx, ManifestKey(id), MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("read manifest of snapshot %s: %w", id, err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("read manifest of snapshot %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("read manifest of snapshot %s: %w: it names snapshot %q", id, storage.ErrCorrupt, m.ID)
	}
	return m, nil
}

// Listed is one snapshot found by List: its id and either its manifest or
// the error reading it gave.
type Listed struct {
	ID       string
	Manifest *Manifest
	Err      error
}

// List returns every committed snapshot, in id order, by listing
// snapshots/ and reading each manifest. A manifest that cannot be read or
// parsed is returned with its error rather than failing the listing, so
// that one bad snapshot does not hide the others; failing to list, or a
// cancelled ctx, is List's error.
func (r *Repo) List(ctx context.Context) ([]Listed, error) {
	ids, err := r.snapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(ids))
	for _, id := range ids {
		m, err := r.Manifest(ctx, id)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		out = append(out, Listed{ID: id, Manifest: m, Err: err})
	}
	return out, nil
}

// snapshotIDs lists the ids of committed snapshots (those with a manifest
// key). Keys under snapshots/ that are not a valid manifest key are
// ignored.
func (r *Repo) snapshotIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.store.List(ctx, "snapshots/", func(oi storage.ObjectInfo) error {
		rest, _ := strings.CutPrefix(oi.Key, "snapshots/")
		id, ok := strings.CutSuffix(rest, "/manifest.json")
		if ok && ValidateID(id) == nil {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return ids, nil
}

// Delete removes snapshot id's manifest, which makes the snapshot invisible
// at once; its chunks stay until a GC finds them unreferenced. Deleting a
// missing snapshot is not an error.
func (r *Repo) Delete(ctx context.Context, id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := r.store.Delete(ctx, ManifestKey(id)); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	r.log.Info("snapshot deleted", "snapshot", id)
	return nil
}

// commit writes m as the snapshot's commit point, with a conditional
// create. If a manifest is already there with the same content (our own
// earlier commit, retried after a crash or a lost answer) it returns that
// one; a different one is ErrAlreadyExists.
func (r *Repo) commit(ctx context.Context, m *Manifest) (*Manifest, error) {
	b, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("commit snapshot %s: %w", m.ID, err)
	}
	err = r.store.Create(ctx, ManifestKey(m.ID), bytes.NewReader(b), int64(len(b)))
	if err == nil {
		return m, nil
	}
	if !errors.Is(err, storage.ErrAlreadyExists) {
		return nil, fmt.Errorf("commit snapshot %s: %w", m.ID, err)
	}
	existing, rerr := r.Manifest(ctx, m.ID)
	if rerr != nil {
		return nil, fmt.Errorf("commit snapshot %s: %w (reading the existing one: %v)", m.ID, err, rerr)
	}
	if !sameContent(existing, m) {
		return nil, fmt.Errorf("commit snapshot %s: %w with different content", m.ID, storage.ErrAlreadyExists)
	}
	return existing, nil
}
