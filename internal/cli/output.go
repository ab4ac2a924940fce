package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/hangar-vm/hangar/api"
)

// table writes aligned columns; the header is upper case.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }
func (t *table) flush() error        { return t.tw.Flush() }

func str(p *string) string {
	if p == nil || *p == "" {
		return "-"
	}
	return *p
}

func bytesOf(p *int64) string {
	if p == nil {
		return "-"
	}
	return humanize.IBytes(uint64(max(*p, 0)))
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func storageOf(s *api.SnapshotState) string {
	if s == nil {
		return "-"
	}
	return string(*s)
}

func progressOf(p *api.Progress) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(int(p.Done*100)) + "%"
}

func printInstances(w io.Writer, l *api.InstanceList) error {
	t := newTable(w, "ID", "NAME", "STATE", "STORAGE", "HOST", "MEMORY", "VCPUS", "CREATED")
	for _, i := range l.Items {
		t.row(i.Id, i.Name, string(i.State), storageOf(i.Storage), str(i.Host),
			humanize.IBytes(uint64(max(i.MemoryMib, 0))<<20), strconv.Itoa(int(i.Vcpus)), ago(i.CreatedAt))
	}
	return t.flush()
}

func printInstance(w io.Writer, i *api.Instance) error {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row("ID:", i.Id)
	t.row("Name:", i.Name)
	t.row("State:", string(i.State))
	t.row("Storage:", storageOf(i.Storage))
	t.row("Host:", str(i.Host))
	t.row("Image:", i.Image)
	t.row("Memory:", humanize.IBytes(uint64(max(i.MemoryMib, 0))<<20))
	t.row("vCPUs:", strconv.Itoa(int(i.Vcpus)))
	t.row("Snapshot:", str(i.SnapshotId))
	if i.SnapshotPolicy != nil && i.SnapshotPolicy.Compression != nil {
		t.row("Compression policy:", compressionText(i.SnapshotPolicy.Compression))
	}
	if i.Job != nil {
		t.row("Job:", fmt.Sprintf("%s %s %s", i.Job.Kind, i.Job.State, progressOf(i.Job.Progress)))
	}
	if i.Error != nil && *i.Error != "" {
		t.row("Error:", *i.Error)
	}
	t.row("Created:", ago(i.CreatedAt))
	t.row("Updated:", ago(i.UpdatedAt))
	return t.flush()
}

func compressionText(c *api.Compression) string {
	var parts []string
	if c.Enabled != nil {
		parts = append(parts, "enabled="+strconv.FormatBool(*c.Enabled))
	}
	if c.Algorithm != nil {
		parts = append(parts, "algorithm="+*c.Algorithm)
	}
	if c.Level != nil {
		parts = append(parts, "level="+strconv.Itoa(*c.Level))
	}
	if len(parts) == 0 {
		return "(not set)"
	}
	return strings.Join(parts, " ")
}

func appliedText(c *api.AppliedCompression) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%s:%d", c.Algorithm, c.Level)
}

func printSnapshots(w io.Writer, l *api.SnapshotList) error {
	t := newTable(w, "ID", "NAME", "INSTANCE", "KIND", "STATE", "PROGRESS", "COMPRESSION", "RAW", "NON-ZERO", "COMPRESSED", "NEW", "CREATED")
	for _, s := range l.Items {
		raw := s.RawBytes
		t.row(s.Id, s.Name, s.InstanceId, string(s.Kind), string(s.State), progressOf(s.Progress), appliedText(s.Compression),
			bytesOf(&raw), bytesOf(s.NonZeroBytes), bytesOf(s.CompressedBytes), bytesOf(s.NewStoredBytes), ago(s.CreatedAt))
	}
	return t.flush()
}

func printSnapshot(w io.Writer, s *api.Snapshot) error {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	raw := s.RawBytes
	t.row("ID:", s.Id)
	t.row("Name:", s.Name)
	t.row("Instance:", s.InstanceId)
	t.row("Kind:", string(s.Kind))
	t.row("State:", string(s.State))
	if s.Progress != nil {
		t.row("Progress:", fmt.Sprintf("%s (%s of %s)", progressOf(s.Progress), humanize.IBytes(uint64(max(s.Progress.RawBytes, 0))), humanize.IBytes(uint64(max(s.Progress.TotalBytes, 0)))))
	}
	t.row("Compression:", appliedText(s.Compression))
	t.row("Raw:", bytesOf(&raw))
	t.row("Non-zero:", bytesOf(s.NonZeroBytes))
	t.row("Compressed:", bytesOf(s.CompressedBytes))
	t.row("Newly stored:", bytesOf(s.NewStoredBytes))
	t.row("Memory:", humanize.IBytes(uint64(max(s.MemoryMib, 0))<<20))
	t.row("vCPUs:", strconv.Itoa(int(s.Vcpus)))
	if s.Hosts != nil && len(*s.Hosts) > 0 {
		t.row("Local on:", strings.Join(*s.Hosts, ", "))
	}
	if s.Error != nil && *s.Error != "" {
		t.row("Error:", *s.Error)
	}
	t.row("Created:", ago(s.CreatedAt))
	if s.CommittedAt != nil {
		t.row("Committed:", ago(*s.CommittedAt))
	}
	return t.flush()
}

func printHosts(w io.Writer, l *api.HostList) error {
	t := newTable(w, "ID", "STATE", "ADDRESS", "MEMORY FREE/TOTAL", "VCPUS FREE/TOTAL", "INSTANCES", "CACHE", "LAST HEARTBEAT")
	for _, h := range l.Items {
		hb := "-"
		if h.LastHeartbeat != nil {
			hb = ago(*h.LastHeartbeat)
		}
		cache := h.CacheBytes
		t.row(h.Id, string(h.State), h.Address,
			humanize.IBytes(uint64(max(h.Free.MemoryMib, 0))<<20)+"/"+humanize.IBytes(uint64(max(h.Capacity.MemoryMib, 0))<<20),
			fmt.Sprintf("%d/%d", h.Free.Vcpus, h.Capacity.Vcpus),
			strconv.Itoa(int(h.Instances)), bytesOf(&cache), hb)
	}
	return t.flush()
}
