package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// The catalog is what the server knows of instances and snapshots. Its
// sources, by authority:
//
//   - the bucket (system of record): every committed manifest is a central
//     snapshot, and the newest standby snapshot of an instance is that
//     instance, on standby (syncCatalog, at start and every CatalogSync);
//   - the hosts' heartbeats: what runs where, local snapshots and upload
//     progress (applyHeartbeatLocked), and commits: a heartbeat that shows
//     an upload ended (the instance's storage central, the snapshot's
//     files dropped, the job gone) has that one manifest read at once
//     (readManifests), so the listing every CatalogSync is only a safety
//     net;
//   - the server's own operations, as they succeed;
//   - a cache in the state dir (catalog.json), for what the bucket cannot
//     say (names of named snapshots, image names, running instances until
//     their host heartbeats). Deleting it loses nothing the bucket knows.
//
// A snapshot's role (an instance's standby state, or a named snapshot) and
// name come from the labels hosts write into manifests (manifest labels
// hangar.role, hangar.snapshot.name, ...; docs/format.md). Manifests
// written before the labels existed are read by the id prefix the server
// gives snapshots: sb-<hex> standby, sn-<hex> named. Instances are
// i-<hex>.
const (
	prefixInstance = "i"
	prefixStandby  = "sb"
	prefixNamed    = "sn"
)

func newID(prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

func isStandbyID(id string) bool { return strings.HasPrefix(id, prefixStandby+"-") }

// Manifest labels written by the hosts (vmhost/manager: LabelRole, ...).
// They are the hosts' vocabulary, repeated here because server and vmhost
// only meet through the wire; docs/format.md is the contract.
const (
	labelRole         = "hangar.role"
	labelSnapshotName = "hangar.snapshot.name"
	labelInstanceName = "hangar.instance.name"
	labelImage        = "hangar.image"
	roleStandby       = "standby"
	roleNamed         = "named"
)

// isStandbyManifest reports whether m is an instance's standby state: its
// role label says so, or, for manifests without one, its id prefix.
func isStandbyManifest(m *snapshot.Manifest) bool {
	switch m.Labels[labelRole] {
	case roleStandby:
		return true
	case roleNamed:
		return false
	}
	return isStandbyID(m.ID)
}

// instanceRec is one instance. Guarded by Server.mu.
type instanceRec struct {
	inst   api.Instance
	policy *compression.Policy
	// standbySnap is the current standby snapshot (kept after a restore,
	// replaced by the next standby, deleted with the instance).
	standbySnap string
	// forkedFrom is the snapshot a forked instance started from.
	forkedFrom   string
	standbyCount int
	// busy names the operation running on the instance; one at a time.
	busy string
}

// holdsResources: the instance takes memory and vCPUs on its host.
func (r *instanceRec) holdsResources() bool {
	switch r.inst.State {
	case api.InstanceStateRunning, api.InstanceStateCreating:
		return true
	}
	return r.busy == opRestore
}

// snapshotRec is one snapshot. Guarded by Server.mu.
type snapshotRec struct {
	snap api.Snapshot
	// hosts hold the raw files; cached probably hold the chunks in cache.
	hosts, cached map[string]bool
	// manifest: the sizes and compression come from the committed
	// manifest, final.
	manifest bool
	// centralSince is when the server learned the snapshot is central; a
	// bucket listing started before it cannot be trusted to show it.
	centralSince time.Time
	// added is when the API created the record (standby, named
	// snapshot): a heartbeat built before then may not show the files.
	added   time.Time
	readers int
	busy    string
}

func newSnapshotRec(s api.Snapshot) *snapshotRec {
	return &snapshotRec{snap: s, hosts: map[string]bool{}, cached: map[string]bool{}}
}

// Operations, as recorded in instanceRec.busy and snapshotRec.busy.
const (
	opCreate   = "create"
	opStandby  = "standby"
	opRestore  = "restore"
	opSnapshot = "snapshot"
	opDelete   = "delete"
)

func (s *Server) instanceViewLocked(r *instanceRec) api.Instance {
	v := r.inst
	v.SnapshotId, v.Storage = nil, nil
	if r.inst.State == api.InstanceStateStandby && r.standbySnap != "" {
		sid := r.standbySnap
		v.SnapshotId = &sid
		if sr := s.snapshots[sid]; sr != nil {
			st := sr.snap.State
			v.Storage = &st
			if st == api.SnapshotStateCentral {
				// openapi.yaml, Instance.host: absent once only the
				// central copy is left. r.inst.Host stays the host
				// that holds the instance's record (the one a delete
				// goes to).
				if v.Host != nil && !sr.hosts[*v.Host] {
					v.Host = nil
				}
				// The upload is over once the snapshot is central,
				// whatever the last heartbeat before the commit said.
				if j := v.Job; j != nil && j.Kind == api.JobKindUpload && j.SnapshotId != nil && *j.SnapshotId == sid {
					v.Job = nil
				}
			}
		}
	} else if r.forkedFrom != "" {
		f := r.forkedFrom
		v.SnapshotId = &f
	}
	return v
}

func (s *Server) snapshotViewLocked(sr *snapshotRec) api.Snapshot {
	v := sr.snap
	hosts := make([]string, 0, len(sr.hosts))
	for h := range sr.hosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	v.Hosts = &hosts
	if v.State != api.SnapshotStateUploading {
		v.Progress = nil
	}
	return v
}

// notifyLocked wakes everyone waiting for a catalog change.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
	s.dirty = true
}

// applyHeartbeatLocked merges what host h reports: its instances (state,
// job), the snapshots whose files it holds (state, progress, sizes), and
// the jobs. What the server is changing right now (busy) is left to the
// operation. Unknown instances and snapshots are adopted: the host runs
// them, so the catalog must show them (a server whose state dir was lost
// learns running instances this way).
func (s *Server) applyHeartbeatLocked(h *hostEntry, hb *hostapi.Heartbeat) {
	now := s.now().UTC()
	jobs := map[string]*api.Job{}
	uploads := map[string]bool{}
	for i := range hb.Jobs {
		j := &hb.Jobs[i]
		if j.InstanceId != nil {
			jobs[*j.InstanceId] = j
		}
		if j.Kind == api.JobKindUpload && j.SnapshotId != nil {
			uploads[*j.SnapshotId] = true
		}
	}
	// An upload job that ended since the last heartbeat committed its
	// snapshot, or was cancelled: the manifest says which.
	for sid := range h.uploads {
		if !uploads[sid] {
			s.wantManifestLocked(sid)
		}
	}
	h.uploads = uploads
	local := map[string]bool{}
	for _, sn := range hb.Snapshots {
		local[sn.Id] = true
	}
	for _, in := range hb.Instances {
		if in.State == api.InstanceStateStandby && in.SnapshotId != nil && in.Storage != nil && *in.Storage == api.SnapshotStateCentral {
			// The host committed the upload (and may have dropped the
			// files, so the snapshot is not in hb.Snapshots any more).
			s.hostCommittedLocked(*in.SnapshotId)
		}
		r := s.instances[in.Id]
		if r == nil {
			if in.State == api.InstanceStateDeleted {
				continue
			}
			if s.deleted[in.Id] {
				// Deleted through the API while this host kept a record
				// (the instance had moved away from it): never adopted
				// again, and the host is told to drop it.
				s.forgetLocked(h, in, "deleted")
				continue
			}
			if in.State == api.InstanceStateStandby && (in.SnapshotId == nil || (s.snapshots[*in.SnapshotId] == nil && !local[*in.SnapshotId])) {
				// A standby whose snapshot neither the bucket (the
				// catalog) nor this host has: nothing to restore it from.
				continue
			}
			r = &instanceRec{inst: in}
			r.inst.Job = nil
			if in.SnapshotPolicy != nil {
				r.policy = policyFromAPI(in.SnapshotPolicy.Compression)
			}
			if in.State == api.InstanceStateStandby && in.SnapshotId != nil {
				r.standbySnap = *in.SnapshotId
			}
			s.instances[in.Id] = r
		}
		if r.busy != "" {
			continue
		}
		if r.inst.Host != nil && *r.inst.Host != h.id {
			// The instance lives elsewhere now (restored on another
			// host): h's record is stale, and must go before a restore
			// placed on h finds it.
			s.forgetLocked(h, in, "moved to "+*r.inst.Host)
			continue
		}
		if r.inst.Host == nil && in.State == api.InstanceStateStandby && (in.SnapshotId == nil || *in.SnapshotId != r.standbySnap) {
			// Recovered from the bucket, whose newest standby snapshot
			// of the instance is not the one h holds.
			s.forgetLocked(h, in, "older standby snapshot")
			continue
		}
		if in.State != r.inst.State {
			r.inst.State = in.State
			r.inst.UpdatedAt = now
		}
		host := h.id
		r.inst.Host = &host
		r.inst.Error = in.Error
		r.inst.Job = jobs[in.Id]
	}
	for _, sn := range hb.Snapshots {
		sr := s.snapshots[sn.Id]
		if sr == nil {
			sr = newSnapshotRec(sn)
			if sr.snap.Standby == nil {
				sr.snap.Standby = boolPtr(isStandbyID(sn.Id))
			}
			s.snapshots[sn.Id] = sr
		}
		sr.hosts[h.id] = true
		sr.cached[h.id] = true
		if sr.manifest {
			continue // final sizes from the manifest beat any report
		}
		if sn.State == api.SnapshotStateCentral {
			// Committed: the manifest has the final sizes. The snapshot
			// reads central once it is merged (readManifests, kicked at
			// once), never before with the sizes of an upload in flight.
			s.wantManifestLocked(sn.Id)
			continue
		}
		s.applyHostSnapshotLocked(sr, sn)
	}
	for _, sr := range s.snapshots {
		if sr.hosts[h.id] && !local[sr.snap.Id] && sr.busy == "" {
			// The host dropped its local copy: hosts drop a snapshot's
			// files once its upload committed.
			delete(sr.hosts, h.id)
			s.wantManifestLocked(sr.snap.Id)
		}
	}
}

// hostCommittedLocked records that a host committed snapshot sid: its
// manifest is read at once (readManifests), and the snapshot reads central
// with the manifest's final sizes from then on — not before, so that no
// client sees a central snapshot without its sizes.
func (s *Server) hostCommittedLocked(sid string) {
	sr := s.snapshots[sid]
	if sr == nil || sr.manifest {
		return
	}
	s.wantManifestLocked(sid)
}

// wantManifestLocked asks the background to read snapshot sid's manifest
// (readManifests), if the catalog knows the snapshot and has not read it
// yet. This is how the server learns a commit at once instead of at its
// next listing of the bucket (CatalogSync, a safety net).
func (s *Server) wantManifestLocked(sid string) {
	if sr := s.snapshots[sid]; sr != nil && !sr.manifest && sr.busy == "" {
		s.pendingManifests[sid] = true
	}
}

// readManifests reads the manifests wantManifestLocked asked for and
// merges them. A manifest that is not there (an upload cancelled, a
// snapshot deleted) is no error; a failed read is tried again at the next
// kick.
func (s *Server) readManifests(ctx context.Context) {
	s.mu.Lock()
	ids := keys(s.pendingManifests)
	clear(s.pendingManifests)
	s.mu.Unlock()
	for _, id := range ids {
		m, err := s.manifests.Manifest(ctx, id)
		s.mu.Lock()
		switch {
		case err == nil:
			if sr := s.snapshots[id]; sr != nil && !sr.manifest && sr.busy == "" {
				s.applyManifestLocked(m)
				s.notifyLocked()
				s.log.Debug("snapshot committed", "snapshot", id)
			}
		case errors.Is(err, storage.ErrNotFound):
			sr := s.snapshots[id]
			if sr == nil || !s.abandonedLocked(sr) {
				break
			}
			if s.now().Sub(sr.added) < 2*time.Duration(s.cfg.Hosts.HeartbeatInterval) {
				// A heartbeat built before the standby answered says
				// the host lacks the files; the next one says better.
				s.pendingManifests[id] = true
				break
			}
			s.dropAbandonedLocked(sr)
		case ctx.Err() == nil:
			s.log.Warn("manifest not read; trying again", "snapshot", id, "err", err)
			s.pendingManifests[id] = true
		}
		s.mu.Unlock()
	}
}

// dropAbandonedLocked drops snapshot sr, whose manifest is not in the
// bucket, if nothing can still make it whole: it is not central, no host
// holds its files (every holder's heartbeat said they are gone, or its
// files became a resumed guest's RAM), no host's last heartbeat reports
// an upload of it, and no operation uses it. That is an upload cancelled
// for good (a restore on the origin preempted it). A snapshot only on a
// host that is unreachable keeps that host in hosts, so it is kept.
func (s *Server) dropAbandonedLocked(sr *snapshotRec) {
	if !s.abandonedLocked(sr) {
		return
	}
	id := sr.snap.Id
	s.log.Info("snapshot abandoned: no host holds it and its upload will not commit", "snapshot", id, "state", sr.snap.State)
	s.dropSnapshotLocked(id)
	s.notifyLocked()
}

// abandonedLocked is dropAbandonedLocked's test, the manifest's absence
// aside.
func (s *Server) abandonedLocked(sr *snapshotRec) bool {
	if sr.manifest || sr.snap.State == api.SnapshotStateCentral || len(sr.hosts) > 0 || sr.busy != "" || sr.readers > 0 {
		return false
	}
	for _, h := range s.hosts {
		if h.uploads[sr.snap.Id] {
			return false
		}
	}
	return true
}

// applyHostSnapshotLocked copies a host's view of a snapshot that is not
// central yet: state, error, progress and the sizes counted so far.
func (s *Server) applyHostSnapshotLocked(sr *snapshotRec, sn api.Snapshot) {
	if sn.State == api.SnapshotStateCentral && sr.snap.State != api.SnapshotStateCentral {
		sr.centralSince = s.now()
	}
	sr.snap.State = sn.State
	sr.snap.Error = sn.Error
	sr.snap.Progress = sn.Progress
	if sn.Compression != nil {
		sr.snap.Compression = sn.Compression
	}
	if sn.RawBytes > 0 {
		sr.snap.RawBytes = sn.RawBytes
	}
	if p := sn.Progress; p != nil && sn.State == api.SnapshotStateUploading {
		sr.snap.NonZeroBytes, sr.snap.CompressedBytes, sr.snap.NewStoredBytes = p.NonZeroBytes, p.CompressedBytes, p.UploadedBytes
	}
	for _, f := range []struct {
		dst **int64
		src *int64
	}{
		{&sr.snap.NonZeroBytes, sn.NonZeroBytes}, {&sr.snap.CompressedBytes, sn.CompressedBytes}, {&sr.snap.NewStoredBytes, sn.NewStoredBytes},
	} {
		if f.src != nil {
			*f.dst = f.src
		}
	}
	if sn.ImageDigest != nil {
		sr.snap.ImageDigest = sn.ImageDigest
	}
	if sn.CommittedAt != nil {
		sr.snap.CommittedAt = sn.CommittedAt
	}
}

func boolPtr(b bool) *bool { return &b }

// vmRecord is what the server reads of Manifest.VM: the instance as the
// host recorded it (vmhost/manager writes instance_id, name, memory_mib,
// vcpus, snapshot_policy). Image is read when present; the manifest has
// only the image digest otherwise.
type vmRecord struct {
	InstanceID     string              `json:"instance_id"`
	Name           string              `json:"name"`
	Image          string              `json:"image"`
	MemoryMiB      int32               `json:"memory_mib"`
	VCPUs          int32               `json:"vcpus"`
	SnapshotPolicy *compression.Policy `json:"snapshot_policy"`
}

// defaultImage is the image of an instance recovered from a manifest that
// does not name it.
const defaultImage = "default"

// applyManifestLocked makes m's snapshot central with the manifest's final
// sizes and compression, creating the record if needed (recovery).
func (s *Server) applyManifestLocked(m *snapshot.Manifest) {
	var vm vmRecord
	if len(m.VM) > 0 {
		if err := json.Unmarshal(m.VM, &vm); err != nil {
			s.log.Warn("manifest VM record unreadable", "snapshot", m.ID, "err", err)
		}
	}
	instID := m.SourceInstance
	if instID == "" {
		instID = vm.InstanceID
	}
	if vm.Name == "" {
		vm.Name = m.Labels[labelInstanceName]
	}
	if vm.Image == "" {
		vm.Image = m.Labels[labelImage]
	}
	standby := isStandbyManifest(m)
	sr := s.snapshots[m.ID]
	if sr == nil {
		kind := api.SnapshotKind(m.Kind)
		if !kind.Valid() {
			kind = api.SnapshotKindStandby
		}
		// The name the snapshot had (hangar.snapshot.name); a manifest
		// without the label (or with a bad one) gets <instance>-standby
		// for a standby snapshot (its <n> is not in the bucket), else its
		// id.
		name := m.Labels[labelSnapshotName]
		if api.ValidateName("name", name) != nil {
			name = m.ID
			if standby && vm.Name != "" {
				name = truncate(vm.Name, 50) + "-standby"
			}
		}
		sr = newSnapshotRec(api.Snapshot{
			Id: m.ID, Name: name, Kind: kind, InstanceId: instID,
			Standby: boolPtr(standby), MemoryMib: vm.MemoryMiB, Vcpus: vm.VCPUs,
			CreatedAt: m.Created.UTC(),
		})
		s.snapshots[m.ID] = sr
	}
	if sr.snap.State != api.SnapshotStateCentral {
		sr.centralSince = s.now()
	}
	sr.snap.State = api.SnapshotStateCentral
	sr.snap.Error, sr.snap.Progress = nil, nil
	if m.Kind != string(api.SnapshotKindStopped) || m.Totals.Raw > 0 {
		sr.snap.Compression = &api.AppliedCompression{Algorithm: api.Algorithm(m.Compression.Algorithm), Level: m.Compression.Level}
	}
	t := m.Totals
	sr.snap.RawBytes = t.Raw
	sr.snap.NonZeroBytes, sr.snap.CompressedBytes, sr.snap.NewStoredBytes = &t.NonZero, &t.Compressed, &t.NewStored
	if m.ImageDigest != "" {
		d := m.ImageDigest
		sr.snap.ImageDigest = &d
	}
	if c := m.Committed.UTC(); !m.Committed.IsZero() {
		sr.snap.CommittedAt = &c
	} else if sr.snap.CommittedAt == nil {
		c := m.Created.UTC() // manifests from before the committed field
		sr.snap.CommittedAt = &c
	}
	sr.manifest = true

	if !standby || instID == "" || api.ValidateID("instance", instID) != nil {
		return
	}
	r := s.instances[instID]
	if r == nil {
		if s.deleted[instID] {
			return
		}
		image := vm.Image
		if image == "" {
			image = defaultImage
		}
		name := vm.Name
		if api.ValidateName("name", name) != nil {
			name = instID
		}
		r = &instanceRec{inst: api.Instance{
			Id: instID, Name: name, State: api.InstanceStateStandby, Image: image,
			MemoryMib: vm.MemoryMiB, Vcpus: vm.VCPUs, CreatedAt: m.Created.UTC(), UpdatedAt: m.Created.UTC(),
		}, policy: vm.SnapshotPolicy}
		if vm.SnapshotPolicy.IsSet() {
			r.inst.SnapshotPolicy = &api.SnapshotPolicy{Compression: policyToAPI(vm.SnapshotPolicy)}
		}
		s.instances[instID] = r
		s.log.Info("instance recovered from the bucket", "instance", instID, "snapshot", m.ID)
	}
	if r.inst.State != api.InstanceStateStandby || r.busy != "" {
		return
	}
	// The newest standby snapshot is the instance's current one.
	if cur := s.snapshots[r.standbySnap]; cur == nil || cur.snap.CreatedAt.Before(sr.snap.CreatedAt) {
		r.standbySnap = m.ID
	}
}

// Manifests is what the catalog needs from the bucket; *snapshot.Repo
// implements it.
type Manifests interface {
	List(ctx context.Context) ([]snapshot.Listed, error)
	Manifest(ctx context.Context, id string) (*snapshot.Manifest, error)
	Delete(ctx context.Context, id string) error
}

var _ Manifests = (*snapshot.Repo)(nil)

// syncCatalog re-reads every committed manifest and merges them: central
// snapshots get their final sizes, snapshots and standby instances missing
// from the catalog are recovered, and central snapshots the bucket no
// longer has are dropped (with the standby instances that had nothing
// else).
func (s *Server) syncCatalog(ctx context.Context) error {
	start := s.now()
	listed, err := s.manifests.List(ctx)
	if err != nil {
		s.met.syncs.Add(ctx, 1, resultAttr("error"))
		return fmt.Errorf("sync catalog: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(listed))
	// Oldest first, so that the newest standby snapshot of an instance
	// ends up its current one.
	sort.SliceStable(listed, func(i, j int) bool {
		a, b := listed[i].Manifest, listed[j].Manifest
		return a != nil && b != nil && a.Created.Before(b.Created)
	})
	for _, l := range listed {
		seen[l.ID] = true
		if l.Err != nil {
			// Kept out of the catalog, but not a reason to drop a record.
			s.log.Warn("manifest unreadable", "snapshot", l.ID, "err", l.Err)
			continue
		}
		s.applyManifestLocked(l.Manifest)
	}
	for id, sr := range s.snapshots {
		if sr.snap.State != api.SnapshotStateCentral || seen[id] || !sr.centralSince.Before(start) || sr.busy != "" {
			continue
		}
		s.log.Warn("snapshot no longer in the bucket", "snapshot", id)
		s.dropSnapshotLocked(id)
	}
	s.notifyLocked()
	s.met.syncs.Add(ctx, 1, resultAttr("ok"))
	return nil
}

// dropSnapshotLocked removes a snapshot from the catalog, and a standby
// instance whose only state it was.
func (s *Server) dropSnapshotLocked(id string) {
	delete(s.snapshots, id)
	for iid, r := range s.instances {
		if r.standbySnap != id {
			continue
		}
		r.standbySnap = ""
		if r.inst.State == api.InstanceStateStandby && r.busy == "" {
			delete(s.instances, iid)
		}
	}
}

// catalogFile is the state dir cache of the catalog.
type catalogFile struct {
	Version   int              `json:"version"`
	Instances []cachedInstance `json:"instances"`
	Snapshots []cachedSnapshot `json:"snapshots"`
	Deleted   []string         `json:"deleted,omitempty"`
}

type cachedInstance struct {
	Instance     api.Instance `json:"instance"`
	StandbySnap  string       `json:"standby_snapshot,omitempty"`
	ForkedFrom   string       `json:"forked_from,omitempty"`
	StandbyCount int          `json:"standby_count,omitempty"`
}

type cachedSnapshot struct {
	Snapshot     api.Snapshot `json:"snapshot"`
	Manifest     bool         `json:"manifest,omitempty"`
	CentralSince time.Time    `json:"central_since"`
	Hosts        []string     `json:"hosts,omitempty"`
	Cached       []string     `json:"cached,omitempty"`
}

const catalogFileName = "catalog.json"

// saveCatalog writes the cache crash-safely: a temporary file, fsynced,
// renamed over the old one, and the directory fsynced.
func (s *Server) saveCatalog() error {
	if s.cfg.StateDir == "" {
		return nil
	}
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	f := catalogFile{Version: 1}
	for _, r := range s.instances {
		f.Instances = append(f.Instances, cachedInstance{Instance: r.inst, StandbySnap: r.standbySnap, ForkedFrom: r.forkedFrom, StandbyCount: r.standbyCount})
	}
	for _, sr := range s.snapshots {
		cs := cachedSnapshot{Snapshot: sr.snap, Manifest: sr.manifest, CentralSince: sr.centralSince}
		for h := range sr.hosts {
			cs.Hosts = append(cs.Hosts, h)
		}
		for h := range sr.cached {
			cs.Cached = append(cs.Cached, h)
		}
		f.Snapshots = append(f.Snapshots, cs)
	}
	for id := range s.deleted {
		f.Deleted = append(f.Deleted, id)
	}
	s.dirty = false
	s.mu.Unlock()
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.cfg.StateDir, catalogFileName), b); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// loadCatalog reads the cache, if any. A missing or unreadable cache is
// not an error: the bucket and the heartbeats rebuild the catalog.
func (s *Server) loadCatalog() {
	if s.cfg.StateDir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.StateDir, catalogFileName))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("catalog cache unreadable; rebuilding from the bucket", "err", err)
		}
		return
	}
	var f catalogFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		s.log.Warn("catalog cache unreadable; rebuilding from the bucket", "err", err, "version", f.Version)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ci := range f.Instances {
		if api.ValidateID("instance", ci.Instance.Id) != nil {
			continue
		}
		r := &instanceRec{inst: ci.Instance, standbySnap: ci.StandbySnap, forkedFrom: ci.ForkedFrom, standbyCount: ci.StandbyCount}
		if ci.Instance.SnapshotPolicy != nil {
			r.policy = policyFromAPI(ci.Instance.SnapshotPolicy.Compression)
		}
		if r.inst.State == api.InstanceStateCreating {
			// Its creation was cut short; the host's heartbeat says how
			// it ended.
			r.inst.State = api.InstanceStateError
			msg := "server restarted while the instance was being created"
			r.inst.Error = &msg
		}
		s.instances[ci.Instance.Id] = r
	}
	for _, cs := range f.Snapshots {
		if api.ValidateID("snapshot", cs.Snapshot.Id) != nil {
			continue
		}
		sr := newSnapshotRec(cs.Snapshot)
		sr.manifest, sr.centralSince = cs.Manifest, cs.CentralSince
		for _, h := range cs.Hosts {
			sr.hosts[h] = true
		}
		for _, h := range cs.Cached {
			sr.cached[h] = true
		}
		s.snapshots[cs.Snapshot.Id] = sr
	}
	for _, id := range f.Deleted {
		s.deleted[id] = true
	}
	s.log.Info("catalog cache loaded", "instances", len(f.Instances), "snapshots", len(f.Snapshots))
}
