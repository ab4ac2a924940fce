package manager

import (
	"context"
	"fmt"
	"testing"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// The manager's own pipelines on a real guest (TCG) and the shared MinIO:
// standby (request → locally durable) and restore from central storage
// (request → guest agent answers) on a host with an empty cache and on one
// whose cache holds the chunks. Small guests (guestMiB) keep them short;
// `go run ./cmd/hangar-bench vm` measures a 1 GiB guest beside the
// baseline. Run with -benchtime=Nx: every iteration boots or restores a VM.
//
//	go test -run '^$' -bench 'Standby|RestoreSnapshot' -benchtime 3x ./vmhost/manager/

// benchFill writes memory-like data into the guest's RAM-backed /run:
// random bytes, kernel symbol text and zeros, about a third of its RAM.
const benchFill = `set -e
dd if=/dev/urandom of=/run/random bs=1M count=12 2>/dev/null
for i in 1 2 3 4; do cat /proc/kallsyms; done | head -c 12582912 > /run/text
dd if=/dev/zero of=/run/zero bs=1M count=12 2>/dev/null`

func fillGuest(b *testing.B, c *agent.Client) {
	b.Helper()
	res, err := c.Exec(context.Background(), agent.ExecRequest{Argv: []string{"sh", "-c", benchFill}, Timeout: 300})
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("fill guest: %v, exit %d: %s", err, res.ExitCode, res.Stderr)
	}
}

// benchStandby calls Standby with zero options (the host default codec
// applies), whatever the options type is spelt as.
func benchStandby[O any](ctx context.Context, standby func(context.Context, string, O) (Instance, error), id string) (Instance, error) {
	var none O
	return standby(ctx, id, none)
}

// quiet keeps the managers' logs out of benchmark output (a benchmark
// prints every b.Log); failures still print through Fatal.
type quiet struct{ *testing.B }

func (quiet) Log(...any)          {}
func (quiet) Logf(string, ...any) {}

var benchConfig = Config{CompressionDefault: &compression.Policy{Algorithm: "zstd"}}

// BenchmarkStandby times Standby alone; between iterations the guest is
// restored from its local files (which preempts the upload) and filled
// again, so that every standby finds fresh dirty memory.
func BenchmarkStandby(b *testing.B) {
	ctx := context.Background()
	a := newHost(quiet{b}, "a", bucketStore(b), hostOpts{cfg: benchConfig})
	id := a.create("bench").ID
	b.SetBytes(guestMiB << 20)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		fillGuest(b, a.agentOf(id))
		b.StartTimer()
		if _, err := benchStandby(ctx, a.m.Standby, id); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := a.m.Restore(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestoreSnapshot times RestoreSnapshot of one committed
// snapshot: "cold" on a fresh host per iteration (empty cache, every chunk
// from MinIO), "warm" on a host whose cache already holds every chunk.
// Bytes per op are the snapshot's non-zero bytes.
func BenchmarkRestoreSnapshot(b *testing.B) {
	ctx := context.Background()
	store := bucketStore(b)
	a := newHost(quiet{b}, "a", store, hostOpts{cfg: benchConfig})
	in := a.create("bench")
	fillGuest(b, a.agentOf(in.ID))
	st, err := benchStandby(ctx, a.m.Standby, in.ID)
	if err != nil {
		b.Fatal(err)
	}
	done := a.waitStorage(in.ID, StorageCentral, uploadTimeout)
	sid, nonZero := st.Snapshot.ID, done.Snapshot.Totals.NonZero

	restore := func(b *testing.B, h *host, i int) {
		b.StartTimer()
		r, err := h.m.RestoreSnapshot(ctx, sid, ForkSpec{ID: fmt.Sprintf("r%d", i), Name: "restored"})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if err := h.m.Delete(ctx, r.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(nonZero)
		b.StopTimer()
		for i := range b.N {
			restore(b, newHost(quiet{b}, fmt.Sprintf("cold%d", i), store, hostOpts{cfg: benchConfig}), i)
		}
	})
	b.Run("warm", func(b *testing.B) {
		h := newHost(quiet{b}, "warm", store, hostOpts{cfg: benchConfig})
		b.SetBytes(nonZero)
		b.StopTimer()
		restore(b, h, 0) // fills the cache
		b.ResetTimer()
		for i := range b.N {
			restore(b, h, i+1)
		}
	})
}
