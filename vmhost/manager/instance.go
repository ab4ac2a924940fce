package manager

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/hangar-vm/hangar/compression"
)

// Sentinel errors. Operations wrap them with context; the host API maps
// them to status codes and back (errors.Is works on both sides).
var (
	// ErrNotFound: no instance (or snapshot) with that id. → 404 not_found
	ErrNotFound = errors.New("not found")
	// ErrInvalidState: the operation is not legal in the instance's
	// current state; nothing changed. → 409 invalid_state
	ErrInvalidState = errors.New("invalid state")
	// ErrBusy: another operation on the instance is in progress; nothing
	// changed, try again later. → 409 conflict
	ErrBusy = errors.New("instance busy")
	// ErrAlreadyExists: an instance with that id exists. → 409 conflict
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: a request field is malformed (id, name, size);
	// compression problems are *compression.ValidationError instead.
	// → 400 invalid_request
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrClosed: the manager is closed.
	ErrClosed = errors.New("manager closed")
)

// State is an instance's lifecycle state (DESIGN §5).
type State string

const (
	StateCreating State = "creating"
	StateRunning  State = "running"
	StateStandby  State = "standby"
	StateStopped  State = "stopped" // no VM, no memory
	StateError    State = "error"
	StateDeleted  State = "deleted" // transient: on disk until the files are gone
)

// transitions lists the legal state changes. Anything else is refused with
// ErrInvalidState.
var transitions = map[State][]State{
	StateCreating: {StateRunning, StateError},
	StateRunning:  {StateStandby, StateStopped, StateError, StateDeleted},
	StateStandby:  {StateRunning, StateError, StateDeleted},
	StateStopped:  {StateRunning, StateError, StateDeleted},
	StateError:    {StateDeleted},
}

// CanTransition reports whether an instance may go from one state to
// another.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Storage says where a snapshot's data is.
type Storage string

const (
	// StorageLocal: only the raw files on this host; an upload is queued.
	StorageLocal Storage = "local"
	// StorageUploading: an upload job is moving it to central storage.
	StorageUploading Storage = "uploading"
	// StorageCentral: committed in central storage (a manifest exists);
	// SnapshotRef.Local says whether the raw files are still here too.
	StorageCentral Storage = "central"
	// StorageError: the last upload attempt failed (SnapshotRef.Error
	// says why); the raw files are safe here and the job retries.
	StorageError Storage = "error"
)

// Snapshot kinds (Manifest.Kind): what a snapshot holds.
const (
	// KindStandby: memory and device state; restoring it resumes the guest.
	KindStandby = "standby"
	// KindStopped: no memory, only the instance's config (ConfigFile);
	// restoring it boots the guest afresh.
	KindStopped = "stopped"
)

// Snapshot roles (LabelRole): why a snapshot was taken.
const (
	// RoleStandby: an instance's standby state; restoring it resumes that
	// instance, and the next standby replaces it.
	RoleStandby = "standby"
	// RoleNamed: a snapshot taken by name while the instance goes on.
	RoleNamed = "named"
)

// Labels the manager records in every manifest (snapshot.Info.Labels), so
// that a server can rebuild its catalog from the bucket alone; the VM
// itself is described by the manifest's vm record (vmRecord). See
// docs/format.md, "What hosts record".
const (
	LabelRole         = "hangar.role"
	LabelSnapshotName = "hangar.snapshot.name"
	LabelInstanceName = "hangar.instance.name"
	LabelImage        = "hangar.image"
)

// Progress is how far an upload (or download) got, in bytes.
type Progress struct {
	// Total is the raw size of the files being moved.
	Total int64 `json:"total"`
	// Raw counts raw bytes processed so far, NonZero those outside zero
	// chunks, Compressed their stored size, Uploaded what was sent to the
	// store, Deduplicated what was not sent because the store had it,
	// Unchanged the raw bytes whose chunk ids came from the file's chunk
	// digests instead of hashing (storage/digests; digests.go).
	Raw          int64 `json:"raw"`
	NonZero      int64 `json:"nonzero"`
	Compressed   int64 `json:"compressed"`
	Uploaded     int64 `json:"uploaded"`
	Deduplicated int64 `json:"deduplicated"`
	Unchanged    int64 `json:"unchanged,omitempty"`
}

// Totals are a committed snapshot's sizes (from its manifest).
type Totals struct {
	Raw        int64 `json:"raw"`
	NonZero    int64 `json:"nonzero"`
	Compressed int64 `json:"compressed"`
	NewStored  int64 `json:"new_stored"`
}

// SnapshotRef is an instance's current snapshot.
type SnapshotRef struct {
	ID      string  `json:"id"`
	Kind    string  `json:"kind"`
	Storage Storage `json:"storage"`
	// Local: the raw files are on this host (<data>/s/<id>).
	Local bool `json:"local"`
	// Error is the last upload error while Storage is error.
	Error string `json:"error,omitempty"`
	// Compression is the setting the upload applies ("zstd:1", "none").
	Compression string `json:"compression"`
	// Progress of the upload while it runs.
	Progress Progress `json:"progress"`
	// Totals once committed.
	Totals  *Totals   `json:"totals,omitempty"`
	Created time.Time `json:"created"`
}

// Instance is one VM as the manager keeps it. Values returned by the
// Manager are copies.
type Instance struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	State     State  `json:"state"`
	MemoryMiB int    `json:"memory_mib"`
	VCPUs     int    `json:"vcpus"`
	// ImageDigest is the guest image the VM booted from; Image its name
	// as the caller knows it ("default"), recorded in manifests.
	ImageDigest string `json:"image_digest"`
	Image       string `json:"image,omitempty"`
	// SnapshotPolicy is the instance level of the compression precedence.
	SnapshotPolicy *compression.Policy `json:"snapshot_policy,omitempty"`
	// Snapshot is the current (last standby) snapshot, nil if none.
	Snapshot *SnapshotRef `json:"snapshot,omitempty"`
	// Error says why the instance is in StateError.
	Error string `json:"error,omitempty"`
	// AgentSocket is the host side of the guest agent's serial port while
	// the VM runs (host-internal; the API does not expose it).
	AgentSocket string    `json:"agent_socket,omitempty"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`

	// RunDir is the VM's runtime directory while it runs (<data>/r/<x>).
	RunDir string `json:"run_dir,omitempty"`
	// Pending is the snapshot a standby was writing when it was
	// interrupted; Open finishes the standby if the files are complete.
	Pending string `json:"pending_snapshot,omitempty"`
	// PendingName is the name of the Pending snapshot
	// (StandbyOptions.Name), so a finished standby's upload keeps it.
	PendingName string `json:"pending_snapshot_name,omitempty"`
	// RestoredFrom is the snapshot the running VM was resumed (restored
	// or forked) from, "" after a fresh boot. It is persisted so that a
	// restore retried with the same snapshot id is recognised, also by a
	// restarted daemon, after the local snapshot's memory became live RAM
	// and Snapshot was cleared.
	RestoredFrom string `json:"restored_from,omitempty"`
	// LazyFrom is set while the VM runs (or is being restored) over a
	// lazy mount of this committed snapshot's memory file (lazy.go); it
	// is where a restarted manager puts the instance back on standby.
	LazyFrom *SnapshotRef `json:"lazy_from,omitempty"`
}

// clone returns a deep copy, so callers never share the manager's state.
func (in *Instance) clone() Instance {
	c := *in
	c.Snapshot = cloneRef(in.Snapshot)
	c.LazyFrom = cloneRef(in.LazyFrom)
	c.SnapshotPolicy = clonePolicy(in.SnapshotPolicy)
	return c
}

func cloneRef(r *SnapshotRef) *SnapshotRef {
	if r == nil {
		return nil
	}
	s := *r
	if s.Totals != nil {
		t := *s.Totals
		s.Totals = &t
	}
	return &s
}

func clonePolicy(p *compression.Policy) *compression.Policy {
	if p == nil {
		return nil
	}
	c := *p
	if p.Enabled != nil {
		b := *p.Enabled
		c.Enabled = &b
	}
	if p.Level != nil {
		l := *p.Level
		c.Level = &l
	}
	return &c
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateID checks an instance or snapshot id: 1 to 63 lower-case
// letters, digits and dashes, not starting with a dash. Every path built
// from an id is built after this check.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: id %q (want 1-63 of a-z, 0-9, '-', not starting with '-')", ErrInvalidArgument, id)
	}
	return nil
}

// newID returns prefix-<time base36>-<random hex>: unique across hosts,
// ordered by creation time, and short (about 22 bytes).
func newID(prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return prefix + "-" + strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + hex.EncodeToString(b[:])
}

// shortToken is a random name for runtime and download directories.
func shortToken() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}
