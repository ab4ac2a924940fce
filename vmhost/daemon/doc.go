// Package daemon is the `hangar host` daemon: it wires one host's parts
// together from a Config and runs them until its context ends.
//
// Run builds, in order: the metrics provider (OpenTelemetry, exported for
// Prometheus from a registry of its own), the central store stack
// (retry(metrics(backend)), stacked by storage/storeconfig.Open and
// nowhere else), the
// host chunk cache, the snapshot.Repo over the store, the guest image
// (loaded from image.dir, or built at start into the image cache), the
// QEMU driver, the instance manager (which finds the instances and jobs
// of an earlier run and resumes their uploads), the host API server and,
// when server_url is set, the registration and heartbeat loop. It then
// serves until ctx is cancelled and shuts down in reverse: operations in
// flight are cancelled, the HTTP server drains, registration stops, the
// manager stops its jobs (persisted, resumed by the next Run), the QEMU
// driver kills the VMs it runs, and the cache and store close.
//
// Configuration keys (YAML; every key is also HANGAR_<KEY> and --<key>
// through internal/config):
//
//	host_id                          this host's id, stable across restarts
//	listen                           host API address (127.0.0.1:7081)
//	advertise_address                URL the server reaches the API at
//	                                 (default http://<listen>)
//	server_url                       the hangar server; empty: standalone
//	cluster_token                    shared with the server (secret)
//	data_dir                         instances, snapshots, jobs (short path)
//	cache.dir, cache.max_bytes       host chunk cache (<data_dir>/cache, 10 GiB)
//	store.kind                       s3 or fs
//	store.dir                        fs store directory
//	store.s3.*                       endpoint, bucket, prefix, access_key,
//	                                 secret_key, use_tls ... (storage/s3)
//	store.retry.*                    retry budget of store calls
//	qemu.binary, qemu.accel          QEMU binary, kvm (default) or tcg
//	qemu.keep_running                guests outlive a killed daemon and are
//	                                 re-attached by the next (default off)
//	image.dir                        a built guest image; empty: build at start
//	image.kernel_dir, image.busybox, image.agent, image.cache_dir
//	                                 inputs and cache of that build
//	capacity.memory_mib, capacity.vcpus
//	                                 offered to guests (default: the machine's)
//	snapshot.compression_default.*   host default compression policy
//	snapshot.keep_local_after_commit keep raw files after the upload commits
//	snapshot.commit_wait             how long a restore or fork here waits for
//	                                 a snapshot's upload elsewhere to commit
//	restore.lazy                     restore and fork from central storage
//	                                 lazily (FUSE; docs/lazy-restore.md)
//	upload_concurrency               upload jobs run at once
//	shutdown_timeout                 bound on the HTTP drain at shutdown
package daemon
