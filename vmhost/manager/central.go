package manager

import (
	"context"

	"github.com/hangar-vm/hangar/storage/snapshot"
)

// Repo is what the manager needs from central storage; *snapshot.Repo is
// the implementation (see its documentation for the full contracts). The
// parts the manager relies on:
//
//   - Upload commits the manifest last, with a conditional create: when it
//     returns an error (cancellation included) no manifest is visible. It
//     is safe to repeat with the same snapshot id after a failure or a
//     crash; chunks already stored are skipped by id, and an upload that
//     had committed returns the committed manifest.
//   - Manifest of a snapshot that is not committed wraps
//     storage.ErrNotFound.
//   - Download writes into an existing directory, host cache first, every
//     chunk verified; a corrupt chunk wraps storage.ErrCorrupt, and on any
//     error nothing is left in the directory.
type Repo interface {
	Upload(ctx context.Context, snap snapshot.Info, files []snapshot.FileSource, opts snapshot.UploadOptions) (*snapshot.Manifest, error)
	Manifest(ctx context.Context, id string) (*snapshot.Manifest, error)
	Download(ctx context.Context, m *snapshot.Manifest, dir string, opts snapshot.DownloadOptions) (snapshot.DownloadStats, error)
}

var _ Repo = (*snapshot.Repo)(nil)

// indexLoader is implemented by repos that can learn which chunks the
// store holds in one listing (snapshot.Repo.LoadIndex): a resumed upload
// then skips stored chunks without a request each.
type indexLoader interface {
	LoadIndex(ctx context.Context) error
}
