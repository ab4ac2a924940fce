package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

// hostEntry is one registered host daemon. Guarded by Server.mu.
type hostEntry struct {
	id       string
	address  string
	version  string
	capacity api.Resources
	images   map[string]string
	client   HostClient
	// lastSeen is the server's clock at the last registration or
	// heartbeat; availability is computed from it on every read, so no
	// timer has to flip it.
	lastSeen      time.Time
	lastHeartbeat *time.Time
	hb            *hostapi.Heartbeat
	// uploads are the snapshots whose upload jobs the last heartbeat
	// listed; one that leaves the list has ended (committed or not).
	uploads map[string]bool
}

// hostTimeout is how long a host may stay silent and still be available.
func (s *Server) hostTimeout() time.Duration {
	return time.Duration(s.cfg.Hosts.HeartbeatInterval) * time.Duration(s.cfg.Hosts.MissedHeartbeats)
}

func (s *Server) availableLocked(h *hostEntry) bool {
	return h != nil && s.now().Sub(h.lastSeen) <= s.hostTimeout()
}

func (s *Server) hostStateLocked(h *hostEntry) api.HostState {
	if s.availableLocked(h) {
		return api.HostStateAvailable
	}
	return api.HostStateUnavailable
}

func (s *Server) hostCounts() map[api.HostState]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[api.HostState]int{}
	for _, h := range s.hosts {
		n[s.hostStateLocked(h)]++
	}
	return n
}

// usedLocked is what the instances placed on host id take: those the
// server knows Running or being created, restored or forked there, or what
// the host itself reported allocated, whichever is more (the host may run
// instances the server has not learned about yet).
func (s *Server) usedLocked(h *hostEntry) (used api.Resources, count int32) {
	for _, r := range s.instances {
		if r.inst.Host == nil || *r.inst.Host != h.id {
			continue
		}
		if r.holdsResources() {
			used.MemoryMib += int64(r.inst.MemoryMib)
			used.Vcpus += r.inst.Vcpus
		}
		count++
	}
	if h.hb != nil {
		used.MemoryMib = max(used.MemoryMib, h.hb.Allocated.MemoryMib)
		used.Vcpus = max(used.Vcpus, h.hb.Allocated.Vcpus)
	}
	return used, count
}

func (s *Server) freeLocked(h *hostEntry) api.Resources {
	used, _ := s.usedLocked(h)
	return api.Resources{MemoryMib: max(0, h.capacity.MemoryMib-used.MemoryMib), Vcpus: max(0, h.capacity.Vcpus-used.Vcpus)}
}

// candidatesLocked lists every host for place, with what it holds of
// snapshot sr (nil for a new instance).
func (s *Server) candidatesLocked(sr *snapshotRec) []candidate {
	out := make([]candidate, 0, len(s.hosts))
	for _, h := range s.hosts {
		c := candidate{ID: h.id, Available: s.availableLocked(h), Free: s.freeLocked(h)}
		if sr != nil {
			c.HasLocal = sr.hosts[h.id]
			c.HasCached = sr.cached[h.id] && h.hb != nil && h.hb.Cache.Chunks > 0
		}
		out = append(out, c)
	}
	return out
}

func (s *Server) hostViewLocked(h *hostEntry) api.Host {
	_, count := s.usedLocked(h)
	v := api.Host{
		Id:            h.id,
		Address:       h.address,
		State:         s.hostStateLocked(h),
		Capacity:      h.capacity,
		Free:          s.freeLocked(h),
		Instances:     count,
		LastHeartbeat: h.lastHeartbeat,
	}
	if h.version != "" {
		ver := h.version
		v.Version = &ver
	}
	if h.hb != nil {
		v.CacheBytes = h.hb.Cache.Bytes
		n := h.hb.Cache.Chunks
		v.CacheChunks = &n
	}
	return v
}

// decodeStrict decodes one JSON value from the request body: unknown
// fields, trailing data and a body over the limit are errors.
func decodeStrict(c *gin.Context, v any) error {
	if c.Request.Body == nil {
		return errors.New("empty body")
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// registerHost serves POST /cluster/v1/hosts.
func (s *Server) registerHost(c *gin.Context) {
	var req hostapi.RegisterRequest
	if err := decodeStrict(c, &req); err != nil {
		requestError(c, err)
		return
	}
	if err := validateRegister(&req); err != nil {
		fail(c, err)
		return
	}
	s.mu.Lock()
	h := s.hosts[req.Id]
	var client HostClient
	if h == nil || h.address != req.Address {
		// Dial outside nothing: dialing builds a client, it does no I/O.
		cl, err := s.dial(req.Id, req.Address)
		if err != nil {
			s.mu.Unlock()
			fail(c, badRequest("address: %v", err))
			return
		}
		client = cl
	}
	if h == nil {
		h = &hostEntry{id: req.Id}
		s.hosts[req.Id] = h
	}
	if client != nil {
		h.client = client
	}
	h.address = req.Address
	h.capacity = req.Capacity
	h.version = ""
	if req.Version != nil {
		h.version = *req.Version
	}
	h.images = nil
	if req.ImageDigests != nil {
		h.images = *req.ImageDigests
	}
	h.lastSeen = s.now()
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("host registered", "host", req.Id, "address", req.Address,
		"memory_mib", req.Capacity.MemoryMib, "vcpus", req.Capacity.Vcpus)
	c.JSON(200, hostapi.RegisterResponse{HeartbeatIntervalSeconds: s.heartbeatSeconds()})
}

func (s *Server) heartbeatSeconds() int32 {
	return int32(time.Duration(s.cfg.Hosts.HeartbeatInterval) / time.Second)
}

func validateRegister(r *hostapi.RegisterRequest) error {
	var fields []api.FieldError
	add := func(f, format string, args ...any) {
		fields = append(fields, api.FieldError{Field: f, Message: fmt.Sprintf(format, args...)})
	}
	if err := api.ValidateID("host", r.Id); err != nil {
		add("id", "%v", err)
	}
	if u, err := url.Parse(r.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(r.Address) > 2048 {
		add("address", "%q is not an http(s) base URL of at most 2048 bytes", truncate(r.Address, 80))
	}
	if r.Capacity.MemoryMib < 0 || r.Capacity.Vcpus < 0 {
		add("capacity", "memory_mib and vcpus must be >= 0")
	}
	if r.Version != nil && len(*r.Version) > 128 {
		add("version", "longer than 128 bytes")
	}
	if r.ImageDigests != nil && len(*r.ImageDigests) > 64 {
		add("image_digests", "%d images, at most 64", len(*r.ImageDigests))
	}
	return fieldsError(fields)
}

// fieldsError is one invalid_request listing every problem, or nil.
func fieldsError(fields []api.FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	msg := ""
	for i, f := range fields {
		if i > 0 {
			msg += "; "
		}
		msg += f.Field + ": " + f.Message
	}
	e := api.NewError(api.ErrorCodeInvalidRequest, "%s", msg)
	e.Fields = &fields
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// heartbeatHost serves PUT /cluster/v1/hosts/{id}/heartbeat.
func (s *Server) heartbeatHost(c *gin.Context) {
	id := c.Param("id")
	if err := api.ValidateID("host", id); err != nil {
		fail(c, err)
		return
	}
	var hb hostapi.Heartbeat
	if err := decodeStrict(c, &hb); err != nil {
		requestError(c, err)
		return
	}
	if err := validateHeartbeat(&hb); err != nil {
		fail(c, err)
		return
	}
	s.mu.Lock()
	h := s.hosts[id]
	if h == nil {
		s.mu.Unlock()
		fail(c, api.NewError(api.ErrorCodeNotFound, "host %s is not registered: register, then heartbeat", id))
		return
	}
	now := s.now()
	h.lastSeen = now
	t := now.UTC()
	h.lastHeartbeat = &t
	h.capacity = hb.Capacity
	h.hb = &hb
	s.applyHeartbeatLocked(h, &hb)
	s.notifyLocked()
	s.mu.Unlock()
	s.kickSync()
	c.JSON(200, hostapi.RegisterResponse{HeartbeatIntervalSeconds: s.heartbeatSeconds()})
}

func validateHeartbeat(hb *hostapi.Heartbeat) error {
	var fields []api.FieldError
	add := func(f, format string, args ...any) {
		fields = append(fields, api.FieldError{Field: f, Message: fmt.Sprintf(format, args...)})
	}
	const maxItems = 10000
	if len(hb.Instances) > maxItems || len(hb.Snapshots) > maxItems || len(hb.Jobs) > maxItems {
		add("instances", "at most %d instances, snapshots and jobs each", maxItems)
	}
	if hb.Capacity.MemoryMib < 0 || hb.Capacity.Vcpus < 0 || hb.Allocated.MemoryMib < 0 || hb.Allocated.Vcpus < 0 {
		add("capacity", "memory_mib and vcpus must be >= 0")
	}
	for i, in := range hb.Instances {
		if api.ValidateID("instance", in.Id) != nil || !in.State.Valid() {
			add(fmt.Sprintf("instances[%d]", i), "bad id or state")
		}
	}
	for i, sn := range hb.Snapshots {
		if api.ValidateID("snapshot", sn.Id) != nil || !sn.State.Valid() {
			add(fmt.Sprintf("snapshots[%d]", i), "bad id or state")
		}
	}
	return fieldsError(fields)
}

// forgetKey is one host's record of one instance.
type forgetKey struct{ host, instance string }

// forgetLocked asks host h, in the background, to drop its record of
// instance in (the host API's delete, idempotent): the instance was
// deleted through the API, or lives on another host now. A record that
// holds something the bucket does not is left alone, whatever the
// reason: a snapshot not committed yet (its upload runs), or, for an
// instance that moved, a running VM. What is left is looked at again at
// the host's next heartbeat, which is also how a failed call is retried.
func (s *Server) forgetLocked(h *hostEntry, in api.Instance, reason string) {
	key := forgetKey{h.id, in.Id}
	if _, ok := s.forgets[key]; ok || in.State == api.InstanceStateCreating {
		return
	}
	if reason != "deleted" {
		if in.State == api.InstanceStateRunning {
			s.log.Debug("stale record of a running instance left alone", "host", h.id, "instance", in.Id, "reason", reason)
			return
		}
		if in.SnapshotId != nil && !s.committedLocked(*in.SnapshotId, in.Storage) {
			return
		}
	}
	s.forgets[key] = false
	s.log.Info("telling a host to forget its record of an instance", "host", h.id, "instance", in.Id, "state", in.State, "reason", reason)
	select {
	case s.forgetKick <- struct{}{}:
	default:
	}
}

// committedLocked: snapshot sid is in the bucket, by the catalog or by the
// host's report (storage).
func (s *Server) committedLocked(sid string, storage *api.SnapshotState) bool {
	if storage != nil && *storage == api.SnapshotStateCentral {
		return true
	}
	sr := s.snapshots[sid]
	return sr != nil && sr.snap.State == api.SnapshotStateCentral
}

// forgetter runs the calls forgetLocked asked for, one at a time, until
// the server closes.
func (s *Server) forgetter() {
	defer s.wg.Done()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-s.forgetKick:
		}
		for {
			s.mu.Lock()
			var key forgetKey
			var client HostClient
			for k, running := range s.forgets {
				h := s.hosts[k.host]
				switch {
				case running:
					continue
				case h == nil || !s.availableLocked(h):
					delete(s.forgets, k) // asked again at its next heartbeat
					continue
				}
				key, client = k, h.client
				s.forgets[k] = true
				break
			}
			s.mu.Unlock()
			if client == nil {
				break
			}
			ctx, cancel := context.WithTimeout(s.bg, time.Duration(s.cfg.Hosts.CallTimeout))
			err := client.DeleteInstance(ctx, key.instance)
			cancel()
			s.mu.Lock()
			delete(s.forgets, key)
			s.mu.Unlock()
			if err != nil {
				if s.bg.Err() != nil {
					return
				}
				s.log.Warn("host did not forget its record of an instance; asking again at its next heartbeat", "host", key.host, "instance", key.instance, "err", err)
				continue
			}
			s.log.Info("host forgot its record of an instance", "host", key.host, "instance", key.instance)
		}
	}
}

// hostsSorted returns the hosts sorted by id.
func (s *Server) hostsSortedLocked() []*hostEntry {
	out := make([]*hostEntry, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
