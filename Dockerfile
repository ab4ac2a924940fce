# hangar for local development with Docker (compose.yaml): one image that
# runs `hangar server` and `hangar host`. Multi-stage: the Go build and the
# guest image are made in the first stage, the runtime is Debian with QEMU.
#
#   docker build -t hangar:dev .

# --- build: the hangar binary and the default guest image ---------------
# The Go version follows go.mod's go directive (e2e/compose_test.go checks).
FROM golang:1.26-bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
# busybox-static and cpio go into the guest's initramfs; the kernel is
# Debian's linux-image-cloud-amd64, unpacked the way scripts/deps.sh does.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends busybox-static cpio \
 && mkdir -p /tmp/kernel /cache/kernel \
 && cd /tmp/kernel \
 && apt-get download -q linux-image-cloud-amd64 \
 && pkg=$(dpkg-deb -f linux-image-cloud-amd64_*.deb Depends | tr ',' '\n' | grep -o 'linux-image-[0-9][^ ]*' | head -1) \
 && apt-get download -q "$pkg" \
 && dpkg-deb -x "$pkg"_*.deb root \
 && cp root/boot/vmlinuz-* /cache/kernel/vmlinuz \
 && release=$(ls root/lib/modules) \
 && mv "root/lib/modules/$release" /cache/kernel/modules \
 && echo "$release" >/cache/kernel/release \
 && echo "$pkg" >/cache/kernel/package \
 && cd / && rm -rf /tmp/kernel /var/lib/apt/lists/*

WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: the runtime stage has no Go toolchain and no libc
# constraints. build-image compiles the guest agent itself (it needs the
# module as working directory) and writes the image to /out/image.
RUN CGO_ENABLED=0 go build -trimpath -o /out/hangar ./cmd/hangar \
 && CGO_ENABLED=0 go build -trimpath -o /out/build-image ./vmhost/guest/cmd/build-image \
 && HANGAR_CACHE=/cache /out/build-image -out /out/image -kernel-dir /cache/kernel -busybox /bin/busybox

# --- runtime: Debian with QEMU, the binary and the guest image -------------
FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends qemu-system-x86 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/hangar /usr/local/bin/hangar
COPY --from=build /out/image /usr/share/hangar/image
# Where the compose services keep their state (named volumes).
RUN mkdir -p /var/lib/hangar/server /var/lib/hangar/host
EXPOSE 7070 7081
ENTRYPOINT ["hangar"]
CMD ["--help"]
