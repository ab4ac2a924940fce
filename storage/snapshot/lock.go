package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hangar-vm/hangar/storage"
)

// Lock and epoch keys (docs/format.md, "Object keys").
const (
	lockPrefix       = "locks/"
	uploadLockPrefix = lockPrefix + "upload-"
	gcLockPrefix     = lockPrefix + "gc-"
	epochKey         = "gc/epoch.json"
)

// ErrBusy is returned by GC when an upload (or another GC) holds a fresh
// lock: GC would risk deleting chunks a manifest about to be committed
// references. Try again later.
var ErrBusy = errors.New("store busy")

// ErrLockLost is returned by an upload or GC that could not refresh its
// lock for longer than Config.LockStale: others may have ignored it, so the
// work is abandoned rather than committed.
var ErrLockLost = errors.New("lock lost")

// lockBody is the content of a lock object. Only its existence and
// modification time matter to the protocol; the body is for operators.
type lockBody struct {
	Kind     string    `json:"kind"` // "upload" or "gc"
	Snapshot string    `json:"snapshot,omitempty"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Created  time.Time `json:"created"`
}

// heldLock is a lock this process wrote and keeps fresh.
type heldLock struct {
	r    *Repo
	key  string
	body []byte
	// lastOK is the UnixNano time the lock was last written successfully.
	lastOK  atomic.Int64
	stop    chan struct{}
	stopped sync.WaitGroup
	// cancel aborts a refresh in flight (set by keepFresh).
	cancel context.CancelFunc
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// writeLock puts a new lock object under prefix.
func (r *Repo) writeLock(ctx context.Context, prefix, kind, snapshot string) (*heldLock, error) {
	host, _ := os.Hostname()
	body, err := json.Marshal(lockBody{Kind: kind, Snapshot: snapshot, Host: host, PID: os.Getpid(), Created: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	name := randomHex(8)
	if snapshot != "" {
		name = snapshot + "-" + name
	}
	l := &heldLock{r: r, key: prefix + name + ".json", body: body, stop: make(chan struct{})}
	if err := l.put(ctx); err != nil {
		return nil, fmt.Errorf("write lock %s: %w", l.key, err)
	}
	return l, nil
}

func (l *heldLock) put(ctx context.Context) error {
	if err := l.r.store.Put(ctx, l.key, bytes.NewReader(l.body), int64(len(l.body))); err != nil {
		return err
	}
	l.lastOK.Store(time.Now().UnixNano())
	return nil
}

// keepFresh rewrites the lock every LockRefresh until release, whatever
// becomes of ctx (its values are kept): a lock may be taken under a shorter
// context than the work it guards (Upload takes it beside its pipeline),
// and release always follows. A failed refresh is logged and tried again at
// the next tick; check reports when failures have lasted long enough for
// others to call the lock stale.
func (l *heldLock) keepFresh(ctx context.Context) {
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.stopped.Add(1)
	go func() {
		defer l.stopped.Done()
		t := time.NewTicker(l.r.cfg.LockRefresh)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				if err := l.put(ctx); err != nil && ctx.Err() == nil { // not cut short by release
					l.r.log.Warn("refresh lock failed", "lock", l.key, "err", err)
				}
			}
		}
	}()
}

// check fails once the lock may look stale to others. A margin of one
// refresh interval covers the time between this check and the work it
// guards.
func (l *heldLock) check() error {
	age := time.Since(time.Unix(0, l.lastOK.Load()))
	if age > l.r.cfg.LockStale-l.r.cfg.LockRefresh {
		return fmt.Errorf("%w: %s not refreshed for %v (stale after %v)", ErrLockLost, l.key, age.Round(time.Second), l.r.cfg.LockStale)
	}
	return nil
}

// release stops the refresher and deletes the lock. It runs even when ctx
// is cancelled (an abandoned upload must not keep GC away until the lock
// goes stale).
func (l *heldLock) release(ctx context.Context) {
	close(l.stop)
	if l.cancel != nil {
		l.cancel()
	}
	l.stopped.Wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := l.r.store.Delete(ctx, l.key); err != nil {
		l.r.log.Warn("remove lock failed; it goes stale", "lock", l.key, "err", err)
	}
}

// foreignLock is a lock object seen in a listing.
type foreignLock struct {
	key   string
	age   time.Duration
	stale bool
}

// listLocks returns the locks under prefix other than own.
func (r *Repo) listLocks(ctx context.Context, prefix, own string) ([]foreignLock, error) {
	var out []foreignLock
	now := time.Now()
	err := r.store.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if oi.Key == own {
			return nil
		}
		age := now.Sub(oi.ModTime)
		out = append(out, foreignLock{key: oi.Key, age: age, stale: age > r.cfg.LockStale})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list locks %s: %w", prefix, err)
	}
	return out, nil
}

// lockUpload takes the upload side of the GC protocol: write an upload
// lock, then look for GC locks. While a fresh GC lock exists the upload
// withdraws its own lock and waits (polling every LockPoll, until ctx is
// done), so that a GC in its sweep never runs beside an upload that could
// reference what it deletes. Stale GC locks are ignored.
func (r *Repo) lockUpload(ctx context.Context, snapshot string) (*heldLock, error) {
	for {
		l, err := r.writeLock(ctx, uploadLockPrefix, "upload", snapshot)
		if err != nil {
			return nil, err
		}
		gcs, err := r.listLocks(ctx, gcLockPrefix, "")
		if err != nil {
			l.release(ctx)
			return nil, err
		}
		var fresh []string
		for _, g := range gcs {
			if !g.stale {
				fresh = append(fresh, g.key)
			}
		}
		if len(fresh) == 0 {
			l.keepFresh(ctx)
			return l, nil
		}
		l.release(ctx)
		r.log.Info("upload waits for garbage collection", "snapshot", snapshot, "locks", strings.Join(fresh, ","))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for garbage collection (%s): %w", strings.Join(fresh, ","), ctx.Err())
		case <-time.After(r.cfg.LockPoll):
		}
	}
}

// lockGC takes the GC side: write a GC lock, then look for upload and other
// GC locks. A fresh one means ErrBusy (after withdrawing our lock); stale
// ones are removed, as left by crashed processes.
func (r *Repo) lockGC(ctx context.Context) (*heldLock, error) {
	l, err := r.writeLock(ctx, gcLockPrefix, "gc", "")
	if err != nil {
		return nil, err
	}
	others, err := r.listLocks(ctx, lockPrefix, l.key)
	if err != nil {
		l.release(ctx)
		return nil, err
	}
	var fresh []string
	for _, o := range others {
		if !o.stale {
			fresh = append(fresh, o.key)
		}
	}
	if len(fresh) > 0 {
		l.release(ctx)
		return nil, fmt.Errorf("garbage collection: %w: %s", ErrBusy, strings.Join(fresh, ", "))
	}
	for _, o := range others {
		r.log.Warn("removing stale lock", "lock", o.key, "age", o.age.Round(time.Second))
		if err := r.store.Delete(ctx, o.key); err != nil {
			l.release(ctx)
			return nil, fmt.Errorf("remove stale lock %s: %w", o.key, err)
		}
	}
	l.keepFresh(ctx)
	return l, nil
}

// readEpoch returns the store's GC epoch: the content of gc/epoch.json,
// which every GC that may delete rewrites, or "" when no GC ever ran.
func (r *Repo) readEpoch(ctx context.Context) (string, error) {
	b, err := r.getObject(ctx, epochKey, 4096)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read gc epoch: %w", err)
	}
	return string(b), nil
}

// writeEpoch gives the store a new GC epoch, telling every repo that its
// index may list deleted chunks.
func (r *Repo) writeEpoch(ctx context.Context) error {
	b, _ := json.Marshal(struct {
		Epoch string    `json:"epoch"`
		Time  time.Time `json:"time"`
	}{randomHex(16), time.Now().UTC()})
	if err := r.store.Put(ctx, epochKey, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("write gc epoch: %w", err)
	}
	return nil
}

// refreshIndex drops the index if a GC ran since it was filled (and loads
// it again if it had been loaded). Called by an upload holding its lock, so
// no GC runs between this and the upload's commit.
func (r *Repo) refreshIndex(ctx context.Context) error {
	epoch, err := r.readEpoch(ctx)
	if err != nil {
		return err
	}
	reset, wasLoaded := r.index.checkEpoch(epoch)
	if !reset {
		return nil
	}
	r.log.Info("garbage collection ran since the chunk index was filled; dropped it", "reload", wasLoaded)
	if wasLoaded {
		return r.LoadIndex(ctx)
	}
	return nil
}
