package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/metric"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/digests"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// Service is the manager's operations as the host API serves them. The
// gin handlers call a Service, and the server's Go client for a host
// implements it too, so that errors.Is on the sentinels works on both
// sides (containerd core/snapshots/proxy style).
type Service interface {
	Create(ctx context.Context, spec CreateSpec) (Instance, error)
	Get(ctx context.Context, id string) (Instance, error)
	List(ctx context.Context) ([]Instance, error)
	Start(ctx context.Context, id string) (Instance, error)
	Stop(ctx context.Context, id string) (Instance, error)
	Standby(ctx context.Context, id string, opts StandbyOptions) (Instance, error)
	Restore(ctx context.Context, id string) (Instance, error)
	Fork(ctx context.Context, source string, spec ForkSpec) (Instance, error)
	RestoreSnapshot(ctx context.Context, snapshotID string, spec ForkSpec) (Instance, error)
	Delete(ctx context.Context, id string) error
	Jobs(ctx context.Context) ([]Job, error)
	Snapshot(ctx context.Context, id string, spec SnapshotSpec) (NamedSnapshot, error)
	Snapshots(ctx context.Context, instanceID string) ([]NamedSnapshot, error)
	GetSnapshot(ctx context.Context, snapshotID string) (NamedSnapshot, error)
	DeleteSnapshot(ctx context.Context, snapshotID string) error
}

var _ Service = (*Manager)(nil)

// Deps are the parts a Manager works with.
type Deps struct {
	// Hypervisor runs the VMs. nil: Open builds a QEMU driver from
	// Config.QEMU and closes it in Close.
	Hypervisor vmhost.Hypervisor
	// Image is the host's guest image; every instance boots from it and
	// every restore must match its digest.
	Image guest.Image
	// Repo is central storage (a *snapshot.Repo).
	Repo Repo
	// Cache is the host chunk cache (a *cache.Cache): uploads fill it,
	// restores and forks read it before the store. nil: no cache.
	Cache snapshot.ChunkCache
	// Logger: default slog.Default(); the manager adds component=manager.
	Logger *slog.Logger
	// Meter records the manager's metrics; nil records nothing.
	Meter metric.Meter
}

// Manager runs a host's instances. It is safe for concurrent use.
type Manager struct {
	cfg   Config
	dirs  layout
	hv    vmhost.Hypervisor
	ownHV bool
	image guest.Image
	repo  Repo
	cache snapshot.ChunkCache
	log   *slog.Logger
	met   *instruments
	// digestKey is the host's chunk digest key (digests.go); nil: off.
	digestKey *digests.Key

	// bg is the lifetime of background work (upload jobs, VM watchers);
	// Close and Detach cancel it.
	bg     context.Context
	stopBG context.CancelCauseFunc
	wg     sync.WaitGroup
	slots  chan struct{} // upload concurrency

	mu    sync.Mutex
	insts map[string]*entry
	jobs  map[string]*jobRun // active upload jobs by snapshot id
	named map[string]*named  // named snapshots by id (snapshot.go)
	// indexLoaded: the repo's chunk index was loaded (once, by the first
	// upload after Open).
	indexLoaded bool
	// recovering holds back job starts while Open walks the instances, so
	// that no job runs beside the walk; held are started at its end.
	recovering bool
	held       []*Job
	closed     bool
	// chunks serves lazy server processes (lazychild.go); nil if the repo
	// cannot fetch single chunks.
	chunks *lazyfs.ChunkServer
	// lazyDigests holds, by backing file path, the chunks filled into
	// each lazy restore of this manager (lazydigests.go).
	lazyDigestsMu sync.Mutex
	lazyDigests   map[string]*lazyDigests
}

// entry is one instance's in-memory state. meta, op and readers are
// guarded by Manager.mu; vm is owned by whoever holds the op slot (and
// read under mu by the watcher).
type entry struct {
	id      string // immutable: readable without the lock
	meta    Instance
	op      string // the exclusive operation in progress, "" if none
	readers int    // forks reading this instance's snapshot files
	vm      vmhost.VM
	// lazy is the process serving vm's memory file (lazy.go,
	// lazychild.go), nil for an eager VM. Owned like vm; stopped only once
	// vm is gone.
	lazy *lazyChild
}

var (
	errPreempted = errors.New("preempted by an operation that needs the snapshot files")
	errDeleted   = errors.New("instance deleted")
	errDetached  = errors.New("manager detached")
)

// Open opens (creating if needed) the data directory in cfg and finds
// every instance and job there: running guests are re-attached, dead ones
// marked, interrupted uploads resumed in the background.
func Open(ctx context.Context, cfg Config, deps Deps) (*Manager, error) {
	cfg = cfg.WithDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if deps.Repo == nil {
		errs = append(errs, fmt.Errorf("%w: no central storage", ErrInvalidConfig))
	}
	if deps.Image.Digest == "" || deps.Image.Kernel == "" {
		errs = append(errs, fmt.Errorf("%w: no guest image (load one with guest.Load or guest.Build)", ErrInvalidConfig))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	met, err := newInstruments(deps.Meter)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:   cfg,
		dirs:  layout{root: cfg.DataDir},
		hv:    deps.Hypervisor,
		image: deps.Image,
		repo:  deps.Repo,
		cache: deps.Cache,
		log:   deps.Logger.With("component", "manager"),
		met:   met,
		slots: make(chan struct{}, cfg.UploadConcurrency),
		insts: map[string]*entry{},
		jobs:  map[string]*jobRun{},
		named: map[string]*named{},
	}
	if err := m.dirs.init(); err != nil {
		return nil, err
	}
	m.digestKey = loadDigestKey(cfg.DataDir, m.log)
	if m.hv == nil {
		s := cfg.QEMU
		if s.Logger == nil {
			s.Logger = deps.Logger
		}
		d, err := qemu.New(ctx, s)
		if err != nil {
			return nil, err
		}
		m.hv, m.ownHV = d, true
	}
	m.bg, m.stopBG = context.WithCancelCause(context.Background())
	// Before the recovery: lazy servers that outlived the previous
	// manager may be waiting for chunks.
	m.serveChunks()
	if err := m.recover(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close stops background work (an interrupted upload resumes at the next
// Open) and, if the manager built its hypervisor, closes it, which kills
// the VMs it runs. Instances keep their recorded state.
func (m *Manager) Close() error {
	if !m.shutdown(errors.New("manager closed")) {
		return nil
	}
	var err error
	if m.ownHV {
		err = m.hv.Close()
	}
	if m.chunks != nil {
		m.chunks.Close()
	}
	// Lazily restored VMs go on as the others do: their lazy servers are
	// separate processes (lazychild.go), waiting for the next manager's
	// chunk socket. Those whose VMs the hypervisor's Close killed end.
	if m.ownHV {
		m.mu.Lock()
		var lazy []*lazyChild
		for _, e := range m.insts {
			if e.lazy != nil {
				lazy = append(lazy, e.lazy)
				e.lazy = nil
			}
		}
		m.mu.Unlock()
		for _, c := range lazy {
			m.stopLazyChild(c)
		}
	}
	return err
}

// EndLazyServers stops the lazy servers (lazychild.go) whose VMs are
// gone, for a caller that closed the hypervisor after Close (killing the
// VMs): they would end by themselves, a moment later.
func (m *Manager) EndLazyServers() {
	m.mu.Lock()
	var gone []*lazyChild
	for _, e := range m.insts {
		if e.lazy == nil {
			continue
		}
		if e.vm != nil {
			select {
			case <-e.vm.Done():
			default:
				continue
			}
		}
		gone = append(gone, e.lazy)
		e.lazy = nil
	}
	m.mu.Unlock()
	for _, c := range gone {
		m.stopLazyChild(c)
	}
}

// Detach lets go of everything without stopping any VM, as a daemon
// handing over to its successor: background jobs stop where they are
// (their persisted state is what a successor's Open resumes), and VMs are
// released so that another process can Attach to them (drivers that can:
// QEMU). A detached manager is closed. Lazy servers (lazychild.go) go on
// and wait for the successor's chunk socket.
func (m *Manager) Detach() {
	if !m.shutdown(errDetached) {
		return
	}
	if m.chunks != nil {
		m.chunks.Close()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.insts {
		e.lazy = nil
		if r, ok := e.vm.(interface{ Release() }); ok {
			r.Release()
		}
		e.vm = nil
	}
}

// shutdown marks the manager closed and stops background work; it
// reports false if it was closed already.
func (m *Manager) shutdown(cause error) bool {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	m.closed = true
	m.mu.Unlock()
	m.stopBG(cause)
	m.wg.Wait()
	return true
}

// Get returns an instance.
func (m *Manager) Get(_ context.Context, id string) (Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookupLocked(id)
	if err != nil {
		return Instance{}, err
	}
	return e.meta.clone(), nil
}

// List returns every instance, ordered by creation time.
func (m *Manager) List(_ context.Context) ([]Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Instance, 0, len(m.insts))
	for _, e := range m.insts {
		out = append(out, e.meta.clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Jobs returns the active (and failed) upload jobs.
func (m *Manager) Jobs(_ context.Context) ([]Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Job, 0, len(m.jobs))
	for _, jr := range m.jobs {
		if jr.committed {
			continue // over: its snapshot already reads central
		}
		out = append(out, *jr.job)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *Manager) lookupLocked(id string) (*entry, error) {
	if err := ValidateID(id); err != nil {
		return nil, fmt.Errorf("instance %q: %w: %w", id, ErrNotFound, err)
	}
	e := m.insts[id]
	if e == nil || e.meta.State == StateDeleted {
		return nil, fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	return e, nil
}

// begin takes id's operation slot for op, or fails with ErrBusy. It
// returns a copy of the metadata as of then: an upload job may rewrite
// e.meta (its snapshot's storage and progress) at any time, so the
// operation reads the copy, and e.meta only under the lock. The state
// itself changes only under the slot.
func (m *Manager) begin(id, op string) (*entry, Instance, func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, Instance{}, nil, fmt.Errorf("%s %s: %w", op, id, ErrClosed)
	}
	e, err := m.lookupLocked(id)
	if err != nil {
		return nil, Instance{}, nil, fmt.Errorf("%s: %w", op, err)
	}
	if e.op != "" {
		return nil, Instance{}, nil, fmt.Errorf("%s instance %s: %w (%s in progress)", op, id, ErrBusy, e.op)
	}
	if e.readers > 0 {
		return nil, Instance{}, nil, fmt.Errorf("%s instance %s: %w (%d forks are reading its snapshot)", op, id, ErrBusy, e.readers)
	}
	e.op = op
	return e, e.meta.clone(), func() {
		m.mu.Lock()
		e.op = ""
		m.mu.Unlock()
	}, nil
}

// invalidState is the error for op in a state that does not allow it.
func invalidState(op string, in *Instance, want ...State) error {
	ws := make([]string, len(want))
	for i, s := range want {
		ws[i] = string(s)
	}
	return fmt.Errorf("%s instance %s: %w: it is %s, %s needs %s", op, in.ID, ErrInvalidState, in.State, op, strings.Join(ws, " or "))
}

// update applies fn to a copy of e's metadata, writes it, and makes it
// current; on a write error nothing changes. A state change must be legal.
func (m *Manager) update(e *entry, fn func(in *Instance)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.updateLocked(e, fn)
}

func (m *Manager) updateLocked(e *entry, fn func(in *Instance)) error {
	next := e.meta.clone()
	fn(&next)
	if next.State != e.meta.State && !CanTransition(e.meta.State, next.State) {
		return fmt.Errorf("instance %s: %w: %s → %s", e.meta.ID, ErrInvalidState, e.meta.State, next.State)
	}
	next.Updated = time.Now().UTC()
	if err := m.dirs.saveInstance(&next); err != nil {
		return err
	}
	e.meta = next
	return nil
}

// CreateSpec describes a new instance.
type CreateSpec struct {
	// ID is the instance id; empty: the manager picks one. The server
	// passes its own so that a retried create is recognised.
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	// ImageDigest, when set, must be this host's image digest.
	ImageDigest string `json:"image_digest,omitempty"`
	// Image is the image's name as the caller knows it ("default"); it is
	// recorded in the instance's manifests.
	Image          string              `json:"image,omitempty"`
	MemoryMiB      int                 `json:"memory_mib"`
	VCPUs          int                 `json:"vcpus"`
	SnapshotPolicy *compression.Policy `json:"snapshot_policy,omitempty"`
}

// MaxNameLen bounds instance names.
const MaxNameLen = 128

func validateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("name %q: want 1 to %d bytes", name, MaxNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("name %q: contains a non-printable character", name)
		}
	}
	return nil
}

// validate reports every problem with the spec: ErrInvalidArgument for the
// fields, *compression.ValidationError (source instance) for the policy.
func (s CreateSpec) validate(imageDigest string) error {
	var errs []error
	if s.ID != "" {
		if err := ValidateID(s.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := validateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if s.ImageDigest != "" && s.ImageDigest != imageDigest {
		errs = append(errs, fmt.Errorf("image %q: this host has %q", s.ImageDigest, imageDigest))
	}
	if s.MemoryMiB < vmhost.MinMemoryMiB || s.MemoryMiB > vmhost.MaxMemoryMiB {
		errs = append(errs, fmt.Errorf("memory_mib %d out of range [%d, %d]", s.MemoryMiB, vmhost.MinMemoryMiB, vmhost.MaxMemoryMiB))
	}
	if s.VCPUs < 1 || s.VCPUs > vmhost.MaxVCPUs {
		errs = append(errs, fmt.Errorf("vcpus %d out of range [1, %d]", s.VCPUs, vmhost.MaxVCPUs))
	}
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("%w: %w", ErrInvalidArgument, errors.Join(errs...))
	}
	if perr := s.SnapshotPolicy.Validate(); perr != nil {
		var ve *compression.ValidationError
		if errors.As(perr, &ve) {
			ve.Source = compression.SourceInstance
		}
		err = errors.Join(err, perr)
	}
	return err
}

// reserve adds a new instance in state Creating with its operation slot
// taken by op, and writes it.
func (m *Manager) reserve(in Instance, op string) (*entry, func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	if e := m.insts[in.ID]; e != nil {
		return nil, nil, fmt.Errorf("%s: instance %s: %w", op, in.ID, ErrAlreadyExists)
	}
	now := time.Now().UTC()
	in.State, in.Created, in.Updated = StateCreating, now, now
	in.ImageDigest = m.image.Digest
	if err := m.dirs.saveInstance(&in); err != nil {
		return nil, nil, err
	}
	e := &entry{id: in.ID, meta: in, op: op}
	m.insts[in.ID] = e
	return e, func() {
		m.mu.Lock()
		e.op = ""
		m.mu.Unlock()
	}, nil
}

// Create boots a new instance from the host's image and returns once its
// guest agent answers (state Running). A guest that does not come up ends
// in StateError with the reason, and the error is returned.
func (m *Manager) Create(ctx context.Context, spec CreateSpec) (Instance, error) {
	if err := spec.validate(m.image.Digest); err != nil {
		return Instance{}, fmt.Errorf("create instance: %w", err)
	}
	if spec.ID == "" {
		spec.ID = newID("i")
	}
	e, done, err := m.reserve(Instance{
		ID: spec.ID, Name: spec.Name, MemoryMiB: spec.MemoryMiB, VCPUs: spec.VCPUs, Image: spec.Image,
		SnapshotPolicy: clonePolicy(spec.SnapshotPolicy),
	}, "create")
	if err != nil {
		return Instance{}, err
	}
	defer done()
	if err := m.boot(ctx, e); err != nil {
		return m.current(e), fmt.Errorf("create instance %s: %w", spec.ID, err)
	}
	m.log.Info("instance created", "instance", spec.ID, "name", spec.Name, "memory_mib", spec.MemoryMiB)
	return m.current(e), nil
}

// Start boots a stopped instance afresh (its memory was discarded).
func (m *Manager) Start(ctx context.Context, id string) (Instance, error) {
	e, in, done, err := m.begin(id, "start")
	if err != nil {
		return Instance{}, err
	}
	defer done()
	if in.State != StateStopped {
		return in, invalidState("start", &in, StateStopped)
	}
	if err := m.boot(ctx, e); err != nil {
		return m.current(e), fmt.Errorf("start instance %s: %w", id, err)
	}
	return m.current(e), nil
}

// boot starts e's VM from the image in a fresh runtime directory and waits
// for the guest agent. The caller holds e's slot.
func (m *Manager) boot(ctx context.Context, e *entry) error {
	run := m.dirs.newRunDir()
	// Recorded before the VM exists, so that a restarted manager finds
	// (and kills) a VM whose boot it never saw finish.
	if err := m.update(e, func(in *Instance) { in.RunDir = run }); err != nil {
		return err
	}
	m.mu.Lock()
	cfg := m.vmConfig(&e.meta, run)
	m.mu.Unlock()
	vm, err := m.hv.Start(ctx, cfg)
	if err == nil {
		bctx, cancel := context.WithTimeout(ctx, m.cfg.BootTimeout)
		var c interface{ Close() error }
		c, err = guest.WaitReady(bctx, vm)
		cancel()
		if err == nil {
			c.Close()
		} else {
			vm.Kill()
		}
	}
	if err != nil {
		removeAll(run)
		msg := "boot failed: " + err.Error()
		if uerr := m.update(e, func(in *Instance) { in.State, in.Error, in.RunDir = StateError, msg, "" }); uerr != nil {
			m.log.Error("record boot failure", "instance", e.id, "err", uerr)
		}
		return err
	}
	if err := m.update(e, func(in *Instance) {
		in.State, in.Error, in.RestoredFrom = StateRunning, "", ""
		in.AgentSocket = vm.Paths().AgentSocket
	}); err != nil {
		vm.Kill()
		removeAll(run)
		return err
	}
	m.setVM(e, vm)
	return nil
}

func (m *Manager) vmConfig(in *Instance, run string) vmhost.Config {
	return vmhost.Config{Name: in.ID, MemoryMiB: in.MemoryMiB, VCPUs: in.VCPUs, Boot: m.image.Boot(), Dir: run}
}

// current returns a copy of e's metadata.
func (m *Manager) current(e *entry) Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.meta.clone()
}

// setVM makes vm e's VM and watches it: a guest that exits on its own
// while no operation is in progress puts the instance in StateError.
func (m *Manager) setVM(e *entry, vm vmhost.VM) {
	m.mu.Lock()
	e.vm = vm
	m.mu.Unlock()
	go func() {
		select {
		case <-vm.Done():
		case <-m.bg.Done():
			return
		}
		if vm.State() != vmhost.StateCrashed {
			return
		}
		st, _ := vm.Wait(context.Background())
		m.mu.Lock()
		defer m.mu.Unlock()
		if e.vm != vm || e.op != "" || e.meta.State != StateRunning || m.closed {
			return // an operation owns the VM and handles its exit
		}
		msg := "guest exited unexpectedly (" + st.String() + ")"
		m.log.Warn("instance crashed", "instance", e.meta.ID, "status", st.String())
		if err := m.updateLocked(e, func(in *Instance) { in.State, in.Error, in.AgentSocket, in.LazyFrom = StateError, msg, "", nil }); err != nil {
			m.log.Error("record crash", "instance", e.meta.ID, "err", err)
		}
		e.vm = nil
		if c := e.lazy; c != nil {
			e.lazy = nil
			go func() { // not under the lock: unmounting waits for the kernel
				m.takeLazyDigests(c.dir) // the crashed guest parks no more
				m.stopLazyChild(c)
			}()
		}
	}()
}

// Stop ends a running instance's VM without saving its memory.
func (m *Manager) Stop(ctx context.Context, id string) (Instance, error) {
	e, in, done, err := m.begin(id, "stop")
	if err != nil {
		return Instance{}, err
	}
	defer done()
	if in.State != StateRunning {
		return in, invalidState("stop", &in, StateRunning)
	}
	sctx, cancel := context.WithTimeout(ctx, m.cfg.StopTimeout)
	defer cancel()
	if e.vm != nil {
		if err := e.vm.Stop(sctx); err != nil {
			return m.current(e), fmt.Errorf("stop instance %s: %w", id, err)
		}
	}
	m.closeLazy(e)
	run := in.RunDir
	if err := m.update(e, func(in *Instance) { in.State, in.RunDir, in.AgentSocket = StateStopped, "", "" }); err != nil {
		return m.current(e), err
	}
	m.mu.Lock()
	e.vm = nil
	m.mu.Unlock()
	if err := removeAll(run); err != nil {
		m.log.Warn("remove runtime dir", "instance", id, "err", err)
	}
	return m.current(e), nil
}

// Delete removes an instance: its VM is killed, an upload job for its
// snapshot is cancelled (and waited for), and its local files are
// removed. Committed snapshots in central storage stay (the server's
// catalog owns them).
func (m *Manager) Delete(ctx context.Context, id string) error {
	e, in, done, err := m.begin(id, "delete")
	if err != nil {
		return err
	}
	defer done()
	if in.State == StateCreating {
		return invalidState("delete", &in, StateRunning, StateStandby, StateStopped, StateError)
	}
	if s := in.Snapshot; s != nil {
		if m.stopJob(ctx, s.ID, errDeleted) {
			m.met.preempted("delete")
		}
	}
	if e.vm != nil {
		e.vm.Kill()
	}
	m.closeLazy(e)
	if err := m.update(e, func(in *Instance) { in.State = StateDeleted }); err != nil {
		return err
	}
	gone := m.current(e) // no job runs any more: this is final
	if err := m.purge(&gone); err != nil {
		m.log.Warn("delete leftovers", "instance", id, "err", err)
	}
	m.mu.Lock()
	e.vm = nil
	delete(m.insts, id)
	m.mu.Unlock()
	m.log.Info("instance deleted", "instance", id)
	return nil
}

// purge removes the files of an instance marked deleted, the instance
// directory last (so that a crash in between is finished by Open).
func (m *Manager) purge(in *Instance) error {
	var errs []error
	errs = append(errs, removeAll(in.RunDir))
	if s := in.Snapshot; s != nil {
		errs = append(errs, removeAll(m.dirs.snapshotDir(s.ID)), m.dirs.removeJob(s.ID))
	}
	if in.Pending != "" {
		errs = append(errs, removeAll(m.dirs.snapshotDir(in.Pending)))
	}
	errs = append(errs, removeAll(m.dirs.instanceDir(in.ID)))
	return errors.Join(errs...)
}

// hypervisorID is what manifests record: the driver's name and, when it
// tells, its version ("qemu QEMU emulator version 7.2.x").
func (m *Manager) hypervisorID() string {
	if v, ok := m.hv.(interface{ Version() string }); ok && v.Version() != "" {
		return m.hv.Name() + " " + v.Version()
	}
	return m.hv.Name()
}

// fileExists reports whether path exists (errors other than absence count
// as present, so that nothing is dropped on a transient failure).
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, os.ErrNotExist)
}

// snapshotComplete reports whether dir holds a complete local snapshot.
func snapshotComplete(dir string) bool {
	for _, f := range []string{vmhost.MemoryFile, vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}
