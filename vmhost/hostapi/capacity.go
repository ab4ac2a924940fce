package hostapi

import (
	"context"
	"fmt"
	"strings"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// holdsResources reports whether an instance in state st occupies memory
// and vCPUs: a VM runs or is being started. A standby or stopped
// instance holds disk only.
func holdsResources(st manager.State) bool {
	return st == manager.StateCreating || st == manager.StateRunning
}

// allocated sums what the instances hold, plus reservations of
// operations in flight whose instance the manager does not show yet.
func (s *Server) allocated(ctx context.Context) (api.Resources, error) {
	ins, err := s.m.List(ctx)
	if err != nil {
		return api.Resources{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allocatedLocked(ins), nil
}

func (s *Server) allocatedLocked(ins []manager.Instance) api.Resources {
	var r api.Resources
	seen := make(map[string]bool, len(ins))
	for _, in := range ins {
		seen[in.ID] = true
		if holdsResources(in.State) {
			r.MemoryMib += int64(in.MemoryMiB)
			r.Vcpus += int32(in.VCPUs)
		}
	}
	for id, res := range s.reserved {
		if !seen[id] {
			r.MemoryMib += res.MemoryMib
			r.Vcpus += res.Vcpus
		}
	}
	return r
}

// reserve holds want for instance id until release is called, or fails
// with no_capacity when the host lacks room. Zero capacity fields are not
// checked. An instance that already holds resources (a retry of a running
// one) is not counted twice.
func (s *Server) reserve(ctx context.Context, id string, want api.Resources) (release func(), err error) {
	ins, err := s.m.List(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.reserved[id]; busy {
		// Another call for this id is in flight; it holds the room.
		return func() {}, nil
	}
	for _, in := range ins {
		if in.ID == id && holdsResources(in.State) {
			return func() {}, nil
		}
	}
	capa, used := s.opts.Capacity, s.allocatedLocked(ins)
	if (capa.MemoryMib > 0 && used.MemoryMib+want.MemoryMib > capa.MemoryMib) ||
		(capa.Vcpus > 0 && used.Vcpus+want.Vcpus > capa.Vcpus) {
		return nil, api.NewError(api.ErrorCodeNoCapacity,
			"host %s lacks room for %d MiB / %d vCPUs: %d MiB / %d vCPUs of %d MiB / %d vCPUs are taken",
			s.opts.HostID, want.MemoryMib, want.Vcpus, used.MemoryMib, used.Vcpus, capa.MemoryMib, capa.Vcpus)
	}
	s.reserved[id] = want
	return func() {
		s.mu.Lock()
		delete(s.reserved, id)
		s.mu.Unlock()
	}, nil
}

// specResources is what an instance spec asks for.
func specResources(memoryMiB, vcpus int32) api.Resources {
	return api.Resources{MemoryMib: int64(memoryMiB), Vcpus: vcpus}
}

// checkSpec validates an instance spec the server sent; it has validated
// it too, but the host does not build anything from unchecked input.
func (s *Server) checkSpec(parent string, spec hostapi.InstanceSpec) error {
	var fields []api.FieldError
	bad := func(field, format string, args ...any) {
		fields = append(fields, api.FieldError{Field: fieldPrefix(parent, field), Message: fmt.Sprintf(format, args...)})
	}
	if err := api.ValidateName("name", spec.Name); err != nil {
		bad("name", "%v", err)
	}
	if spec.Image != s.opts.ImageName && spec.Image != s.opts.ImageDigest {
		bad("image", "%q: this host boots only image %q (%s)", spec.Image, s.opts.ImageName, s.opts.ImageDigest)
	}
	if spec.MemoryMib < 64 || spec.MemoryMib > 1048576 {
		bad("memory_mib", "%d out of range [64, 1048576]", spec.MemoryMib)
	}
	if spec.Vcpus < 1 || spec.Vcpus > 256 {
		bad("vcpus", "%d out of range [1, 256]", spec.Vcpus)
	}
	if len(fields) == 0 {
		return nil
	}
	msgs := make([]string, len(fields))
	for i, f := range fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	return &api.Error{Code: api.ErrorCodeInvalidRequest, Message: "invalid instance spec: " + strings.Join(msgs, "; "), Fields: &fields}
}

func fieldPrefix(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}
