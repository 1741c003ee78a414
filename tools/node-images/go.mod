// The images of the real node's tests (scripts/lib/node.sh builds them and imports them into
// containerd): static binaries FROM scratch, no dependencies beyond the Go standard library.
module palisade.dev/tools/node-images

go 1.26.0
