package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/qemu/migstream"
)

// privateMigrateParams lift the migration's bandwidth cap (32 MiB/s by
// default in QEMU 7.2), which a device-state-only migration never meets
// but a full RAM one would: the guest is paused and the pipe is local.
var privateMigrateParams = map[string]any{"max-bandwidth": int64(1) << 40}

// saveConverted parks a paused VM whose RAM is private (share=off):
// x-ignore-shared does not skip such a block, so QEMU migrates every RAM
// page. The stream goes through a pipe into migstream.Convert, which
// writes the RAM block's pages into a new dir/memory (zero pages as holes)
// and the rest of the stream into dir/device-state: together what a
// share=on standby writes, which the share=on restore resumes. Both files
// are durable, and visible under their names only once complete.
func (v *VM) saveConverted(ctx context.Context, dir string) (_ int64, err error) {
	memTmp, err := os.CreateTemp(dir, "."+vmhost.MemoryFile+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("convert ram: %w", err)
	}
	defer func() {
		memTmp.Close()
		os.Remove(memTmp.Name()) // no-op after the rename
	}()
	devTmp, err := os.CreateTemp(dir, "."+vmhost.DeviceStateFile+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("convert ram: %w", err)
	}
	defer func() {
		devTmp.Close()
		os.Remove(devTmp.Name())
	}()
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("convert ram: %w", err)
	}
	defer pr.Close()
	unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 1<<20) // fewer wakeups; the default 64 KiB works too
	if err := v.execute(ctx, "migrate-set-parameters", privateMigrateParams, nil); err != nil {
		pw.Close()
		return 0, fmt.Errorf("convert ram: %w", err)
	}
	err = v.qmp.executeFD(ctx, "getfd", map[string]string{"fdname": "hangar-devstate"}, nil, int(pw.Fd()))
	pw.Close() // QEMU holds its own copy: the converter sees EOF when QEMU closes it
	if err != nil {
		return 0, fmt.Errorf("convert ram: %w", v.exitErr(err))
	}

	type result struct {
		stats migstream.Stats
		err   error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		st, err := migstream.Convert(pr, devTmp, memTmp, ramBlock)
		if err != nil {
			pr.Close() // QEMU's writes now fail instead of blocking
		}
		done <- result{st, err}
	}()
	// fail stops the converter (closing the pipe ends it) and waits for it.
	fail := func(err error) (int64, error) {
		pr.Close()
		<-done
		return 0, fmt.Errorf("convert ram: %w", err)
	}
	if err := v.execute(ctx, "migrate", map[string]string{"uri": "fd:hangar-devstate"}, nil); err != nil {
		v.execute(context.WithoutCancel(ctx), "closefd", map[string]string{"fdname": "hangar-devstate"}, nil)
		return fail(err)
	}
	for {
		var mi migrateInfo
		if err := v.execute(ctx, "query-migrate", nil, &mi); err != nil {
			v.execute(context.WithoutCancel(ctx), "migrate_cancel", nil, nil)
			return fail(err)
		}
		if mi.Status == "completed" {
			break
		}
		if mi.Status == "failed" || mi.Status == "cancelled" {
			// The converter's own error, if any, says why.
			pr.Close()
			res := <-done
			return 0, fmt.Errorf("convert ram: migration %s: %s (converter: %v)", mi.Status, mi.ErrorDesc, res.err)
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			v.execute(context.WithoutCancel(ctx), "migrate_cancel", nil, nil)
			return fail(err)
		}
	}
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return fail(context.Cause(ctx))
	}
	if res.err != nil {
		return 0, fmt.Errorf("convert ram: %w", res.err)
	}
	convert := time.Since(start)
	for _, f := range []*os.File{memTmp, devTmp} {
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("convert ram: %w", err)
		}
	}
	// The memory file first: a device state never names RAM that is not
	// there. A memory file alone is not a snapshot (no info file yet).
	if err := os.Rename(memTmp.Name(), filepath.Join(dir, vmhost.MemoryFile)); err != nil {
		return 0, fmt.Errorf("convert ram: %w", err)
	}
	if err := os.Rename(devTmp.Name(), filepath.Join(dir, vmhost.DeviceStateFile)); err != nil {
		os.Remove(filepath.Join(dir, vmhost.MemoryFile)) // the guest resumes from its own RAM
		return 0, fmt.Errorf("convert ram: %w", err)
	}
	st := res.stats
	v.d.log.Info("private ram converted", "vm", v.m.Config.Name, "stream_bytes", st.InBytes,
		"device_state_bytes", st.OutBytes, "pages", st.Pages, "zero_pages", st.ZeroPages,
		"took", convert, "mb_per_s", float64(st.InBytes)/1e6/convert.Seconds(), "synced_after", time.Since(start))
	return st.OutBytes, nil
}
