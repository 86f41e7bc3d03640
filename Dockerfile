# syntax=docker/dockerfile:1
# kvstack's Go binaries in one small image: api, consumer, migrate (and the
# healthcheck the compose file uses, as the image has no shell). Each compose
# service picks its binary with `command:`.

# The patch release go.mod's go directive names: the official images set
# GOTOOLCHAIN=local, so an older 1.26 image (a cached 1.26-alpine) refuses to
# build the module. deploy/composetest keeps the two equal.
# The builder runs on the build host's platform and cross-compiles for the
# target's (TARGETOS, TARGETARCH: buildx sets them for each of --platform):
# one image per architecture, no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26.8-alpine AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/ \
        ./cmd/api ./cmd/consumer ./cmd/migrate ./tools/healthcheck

# Static binaries only: no shell, no package manager, not root. Labelled
# with the OCI annotations a registry and a scanner read: where the source
# is, which commit, which release (make image passes REVISION and VERSION).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/kvstack/kvstack" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.title="kvstack" \
      org.opencontainers.image.description="kvstack's api, consumer and migrate binaries"
COPY --from=build /out/ /kvstack/
USER nonroot:nonroot
EXPOSE 8081 8082 8090
CMD ["/kvstack/api"]
