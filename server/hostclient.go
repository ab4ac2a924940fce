package server

import (
	"context"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

// HostClient is what the server asks of one host daemon: the operations of
// the host API (api/host/hostapi.yaml, tag host), with the wire types of
// package api and hostapi. The host's instance manager serves the same
// method set over HTTP, so the server talks to a host as if it were local
// (containerd's core/snapshots/proxy). HTTPHostClient is the real one; tests
// use a fake beside it.
//
// Contract, for every implementation:
//
//   - Errors keep their meaning: a host's {code, message} comes back as an
//     *api.Error matching its sentinel (errors.Is(err, api.ErrInvalidState)),
//     wrapped with context. A host that cannot be reached is an error that
//     matches no api sentinel (the server answers it 503 host_unavailable).
//   - Instance and snapshot ids are chosen by the server and are the
//     idempotency keys: calling again with the same id and body answers as
//     the first call did, so every method may be retried after a timeout.
//     Deletes of absent resources succeed.
//   - Calls honour ctx; a cancelled call may still take effect on the host,
//     which a retry with the same id then reports.
//
// Implementations are safe for concurrent use.
type HostClient interface {
	// CreateInstance boots instance id with spec; it answers when Running.
	CreateInstance(ctx context.Context, id string, spec hostapi.InstanceSpec) (api.Instance, error)
	// GetInstance returns one instance (api.ErrNotFound when absent).
	GetInstance(ctx context.Context, id string) (api.Instance, error)
	// ListInstances returns every instance the host runs or holds.
	ListInstances(ctx context.Context) ([]api.Instance, error)
	// DeleteInstance stops the VM and drops its local files.
	DeleteInstance(ctx context.Context, id string) error
	// Standby parks a Running instance into snapshot req.SnapshotId, with
	// the compression the server resolved; it answers once the snapshot is
	// durable locally.
	Standby(ctx context.Context, id string, req hostapi.StandbyRequest) (hostapi.StandbyResponse, error)
	// Restore resumes instance id from snapshot req.SnapshotId, from local
	// files or from the bucket.
	Restore(ctx context.Context, id string, req hostapi.RestoreRequest) (api.Instance, error)
	// CreateSnapshot takes a named snapshot of instance id.
	CreateSnapshot(ctx context.Context, id string, req hostapi.SnapshotRequest) (api.Snapshot, error)
	// GetSnapshot returns a snapshot whose local files the host holds.
	GetSnapshot(ctx context.Context, id string) (api.Snapshot, error)
	// ListSnapshots returns every snapshot whose files the host holds.
	ListSnapshots(ctx context.Context) ([]api.Snapshot, error)
	// DeleteSnapshot drops the host's local copy of a snapshot.
	DeleteSnapshot(ctx context.Context, id string) error
	// Fork starts instance req.InstanceId from snapshot id.
	Fork(ctx context.Context, id string, req hostapi.ForkRequest) (api.Instance, error)
	// Jobs returns the host's running and recent jobs.
	Jobs(ctx context.Context) ([]api.Job, error)
}

// HostDialer returns the client of the host registered with id at
// address. It is called when a host registers, and again when it
// re-registers with another address.
type HostDialer func(id, address string) (HostClient, error)
